# azd postdeploy hook (Windows): the same as postdeploy.sh. Subscribes the function app's Event Grid triggers to
# ACS events once the deployed code has created the host's eventgrid_extension key.
$ErrorActionPreference = 'Stop'

if ($env:SWITCHBOARD_EVENT_SUBSCRIPTIONS -eq 'true') {
    Write-Host "Event Grid subscriptions are already part of this environment's provisioning."
    exit 0
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Error "The Azure CLI (az) is needed to read the function app's Event Grid key; install it, run 'az login', then 'azd hooks run postdeploy'."
}

Write-Host "Waiting for the Event Grid extension key of $($env:AZURE_FUNCTION_APP_NAME) ..."
$key = ''
for ($try = 0; $try -lt 30 -and -not $key; $try++) {
    $key = az functionapp keys list -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME `
        --query systemKeys.eventgrid_extension -o tsv 2>$null
    if (-not $key) {
        try { Invoke-WebRequest -UseBasicParsing "https://$($env:AZURE_FUNCTION_APP_NAME).azurewebsites.net/api/openapi.json" | Out-Null } catch { }
        Start-Sleep -Seconds 10
    }
}
if (-not $key) {
    Write-Error "No eventgrid_extension key after 5 minutes: check the deployment logs, then run 'azd hooks run postdeploy'."
}

azd env set SWITCHBOARD_EVENT_SUBSCRIPTIONS true
azd provision --no-prompt
