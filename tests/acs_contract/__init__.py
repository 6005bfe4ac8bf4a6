"""The ACS emulator's shapes, read back through the installed azure-communication-* packages' own models."""
