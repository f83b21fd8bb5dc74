"""The hub: a control plane (HTTPS + WebSocket, TLS 1.3) that agents dial out to and clients reach them through."""
