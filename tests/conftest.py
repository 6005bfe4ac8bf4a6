pytest_plugins = [
    "tests.peers.redis_server",
    "tests.peers.cosmos_emulator",
    "tests.peers.local_host",
    "tests.peers.openai_server",
]
