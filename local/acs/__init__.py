"""A local Azure Communication Services emulator: the REST subset our SDK calls use, on one endpoint.

Like the real resource, one endpoint serves every ACS API; each API is a module here (`messages` for Advanced
Messaging, `sms` for SMS, `calls` for Call Automation) that adds its routes to the emulator's aiohttp app. Requests
must carry the SDK's HMAC-SHA256 signature (`auth.py`), and events go back to the local Functions host the way Event
Grid or Call Automation callbacks would (`events.py`).
"""
