"""The domain: models, conversation core, agent runtime, scenarios, stores, settings.

Nothing in here imports azure.functions: the same code serves the function app, the media gateway and the
local tools.
"""
