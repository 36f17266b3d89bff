"""Flower app for privpkt's Rust nodes."""
