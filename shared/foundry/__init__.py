"""Azure AI Foundry: the project client, the scenario's agents as Foundry agent versions, and their sync.

`python -m shared.foundry sync` creates or updates one prompt-agent version per scenario agent (docs/deploy.md);
the Foundry policy (shared/policies/foundry.py) runs customer turns against them. Importing this package imports
nothing heavy; `client` imports azure-ai-projects and openai.
"""
