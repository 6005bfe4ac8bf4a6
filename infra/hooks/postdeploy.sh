#!/bin/sh
# azd postdeploy hook: subscribe the function app's Event Grid triggers to ACS events (infra/modules/events.bicep).
#
# Event Grid validates a webhook when a subscription is created, and the Functions host's `eventgrid_extension` key
# (part of the endpoint URL) only exists once the deployed code has started the Event Grid extension. So after every
# deploy: wait for the key, then deploy events.bicep into the resource group with the Azure CLI. Deploying it again
# changes nothing that is already right. Nothing is remembered in the azd environment (no flag, no second
# `azd provision` from inside azd): an environment that went through `azd down` gets its subscriptions back with the
# next `azd up`, and a change to events.bicep takes effect at the next deploy. postdeploy.ps1 is the same for Windows.
#
# Reads the outputs azd wrote for main.bicep. SWITCHBOARD_KEY_WAIT_TRIES (30) and SWITCHBOARD_KEY_WAIT_SECONDS (10)
# set how long it waits for the key.
set -eu

for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_EVENTGRID_SYSTEM_TOPIC AZURE_MANAGED_IDENTITY_NAME \
            AZURE_STORAGE_ACCOUNT_NAME; do
  eval "value=\${${name}:-}"
  if [ -z "${value}" ]; then
    echo "${name} is not in the azd environment: run 'azd provision' first, then 'azd hooks run postdeploy'." >&2
    exit 1
  fi
done
if ! command -v az >/dev/null 2>&1; then
  echo "The Azure CLI (az) is needed to read the function app's Event Grid key and deploy the subscriptions; install it, run 'az login', then 'azd hooks run postdeploy'." >&2
  exit 1
fi

template="$(cd "$(dirname "$0")/.." && pwd)/modules/events.bicep"
tries_left="${SWITCHBOARD_KEY_WAIT_TRIES:-30}"
pause="${SWITCHBOARD_KEY_WAIT_SECONDS:-10}"

echo "Waiting for the Event Grid extension key of ${AZURE_FUNCTION_APP_NAME} ..."
while :; do
  key=$(az functionapp keys list -g "${AZURE_RESOURCE_GROUP}" -n "${AZURE_FUNCTION_APP_NAME}" \
        --query systemKeys.eventgrid_extension -o tsv 2>/dev/null || true)
  [ -n "${key}" ] && break
  tries_left=$((tries_left - 1))
  if [ "${tries_left}" -le 0 ]; then
    echo "No eventgrid_extension key on ${AZURE_FUNCTION_APP_NAME}: check the deployment logs, then run 'azd hooks run postdeploy'." >&2
    exit 1
  fi
  # A request wakes the host, which starts the extension and creates the key.
  curl -fsS -o /dev/null "https://${AZURE_FUNCTION_APP_NAME}.azurewebsites.net/api/openapi.json" 2>/dev/null || true
  sleep "${pause}"
done

echo "Subscribing ${AZURE_FUNCTION_APP_NAME} to the ACS events of ${AZURE_EVENTGRID_SYSTEM_TOPIC} ..."
if ! az deployment group create -g "${AZURE_RESOURCE_GROUP}" --name switchboard-events --template-file "${template}" \
       --parameters systemTopicName="${AZURE_EVENTGRID_SYSTEM_TOPIC}" functionAppName="${AZURE_FUNCTION_APP_NAME}" \
                    identityName="${AZURE_MANAGED_IDENTITY_NAME}" storageAccountName="${AZURE_STORAGE_ACCOUNT_NAME}" \
       --only-show-errors -o none; then
  echo "Deploying the Event Grid subscriptions failed (the error is above); fix it, then run 'azd hooks run postdeploy'." >&2
  exit 1
fi
echo "Event Grid subscriptions are in place: incoming-call, whatsapp-events, sms-events."
