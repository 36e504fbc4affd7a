"""A program in a detached tmux session: type into it, read its screen."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path


class Terminal:
    """One command in its own tmux server (`-L`), so tests never touch a user's sessions."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str], width: int = 100, height: int = 30
    ) -> None:
        self.socket = f"chatd-test-{uuid.uuid4().hex[:12]}"
        # the pane stays after the program ends, so its screen can be read; bash prints the
        # exit status (tmux's own #{pane_dead_status} is empty when a program ends fast), and
        # its INT trap keeps Ctrl-C's SIGINT from ending bash too (children get the default)
        self.config = Path(tempfile.mkdtemp()) / "tmux.conf"
        self.config.write_text("set -g remain-on-exit on\n")
        script = 'trap : INT; "$@"; echo "[exited with $?]"'
        command = ["bash", "-c", script, "terminal", *command]
        size = ["-x", str(width), "-y", str(height)]
        self._tmux("new-session", "-d", *size, *command, env=env)

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.config), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout

    def type(self, text: str, enter: bool = True) -> None:
        """Type `text` literally, then Enter."""
        self._tmux("send-keys", "-t", "0", "-l", text)
        if enter:
            self.keys("Enter")

    def keys(self, *keys: str) -> None:
        """Press keys by tmux's names: Enter, C-c, C-d, M-Enter, Up, ..."""
        self._tmux("send-keys", "-t", "0", *keys)

    def screen(self) -> str:
        """The pane and its scrollback, wrapped lines joined."""
        return self._tmux("capture-pane", "-t", "0", "-p", "-J", "-S", "-")

    def wait_for(self, pattern: str, timeout: float = 120, after: int = 0) -> re.Match[str]:
        """Poll the screen until `pattern` matches its text from offset `after`."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            match = re.compile(pattern, re.MULTILINE).search(screen, after)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on the screen after {timeout}s:\n{screen}")
            time.sleep(0.05)

    def exit_status(self, timeout: float = 30) -> int:
        """Wait for the program to end; its exit status."""
        return int(self.wait_for(r"^\[exited with (\d+)\]$", timeout).group(1))

    def close(self) -> None:
        socket = subprocess.run(
            ["tmux", "-L", self.socket, "display-message", "-p", "#{socket_path}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.strip()
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False, timeout=30
        )
        shutil.rmtree(self.config.parent, ignore_errors=True)
        if socket:  # kill-server leaves the socket file behind
            Path(socket).unlink(missing_ok=True)
