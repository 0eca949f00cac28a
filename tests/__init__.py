"""Tests of the Instrument Hub integration."""
