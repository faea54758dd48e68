"""The OpenAI wire format: request validation, request view, response builders."""
