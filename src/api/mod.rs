//! The HTTP and WebSocket surface (OpenAI-compatible). (Filled in by the HTTP issue.)
