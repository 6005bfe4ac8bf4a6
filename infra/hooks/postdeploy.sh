#!/bin/sh
# azd postdeploy hook: subscribe the function app's Event Grid triggers to ACS events (infra/modules/events.bicep).
#
# The subscriptions cannot be made on the first provision: Event Grid validates the endpoint when a subscription
# is created, and the host's `eventgrid_extension` key (part of the endpoint URL) only exists once the deployed
# code has started the Event Grid extension. So: wait for the key, then provision again with the subscriptions on.
# The flag stays in the azd environment, so every later `azd provision` keeps them.
set -eu

if [ "${SWITCHBOARD_EVENT_SUBSCRIPTIONS:-false}" = "true" ]; then
  echo "Event Grid subscriptions are already part of this environment's provisioning."
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  echo "The Azure CLI (az) is needed to read the function app's Event Grid key; install it, run 'az login', then 'azd hooks run postdeploy'." >&2
  exit 1
fi

echo "Waiting for the Event Grid extension key of ${AZURE_FUNCTION_APP_NAME} ..."
tries=0
while :; do
  key=$(az functionapp keys list -g "${AZURE_RESOURCE_GROUP}" -n "${AZURE_FUNCTION_APP_NAME}" \
        --query systemKeys.eventgrid_extension -o tsv 2>/dev/null || true)
  [ -n "${key}" ] && break
  tries=$((tries + 1))
  if [ "${tries}" -ge 30 ]; then
    echo "No eventgrid_extension key after 5 minutes: check the deployment logs, then run 'azd hooks run postdeploy'." >&2
    exit 1
  fi
  # A request wakes the host, which starts the extension and creates the key.
  curl -fsS -o /dev/null "https://${AZURE_FUNCTION_APP_NAME}.azurewebsites.net/api/openapi.json" 2>/dev/null || true
  sleep 10
done

azd env set SWITCHBOARD_EVENT_SUBSCRIPTIONS true
azd provision --no-prompt
