"""Tests of the protocol sources, run without Home Assistant."""
