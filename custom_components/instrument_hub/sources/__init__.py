"""Protocol sources: each turns one device protocol into normalized events (no Home Assistant imports)."""
