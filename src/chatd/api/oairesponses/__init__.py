"""The OpenAI Responses API (`/v1/responses`) over the `Backend` contract."""
