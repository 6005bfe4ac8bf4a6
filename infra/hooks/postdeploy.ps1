# azd postdeploy hook (Windows): the same as postdeploy.sh. After every deploy, waits until the deployed code has
# created the Functions host's eventgrid_extension key, then deploys infra/modules/events.bicep into the resource
# group with the Azure CLI. Nothing is remembered in the azd environment and azd is not run again from here, so an
# environment that went through `azd down` gets its subscriptions back with the next `azd up`.
# SWITCHBOARD_KEY_WAIT_TRIES (30) and SWITCHBOARD_KEY_WAIT_SECONDS (10) set how long it waits for the key.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_EVENTGRID_SYSTEM_TOPIC',
                  'AZURE_MANAGED_IDENTITY_NAME', 'AZURE_STORAGE_ACCOUNT_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Write-Error "$name is not in the azd environment: run 'azd provision' first, then 'azd hooks run postdeploy'."
    }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Error "The Azure CLI (az) is needed to read the function app's Event Grid key and deploy the subscriptions; install it, run 'az login', then 'azd hooks run postdeploy'."
}

$template = Join-Path (Split-Path -Parent $PSScriptRoot) 'modules/events.bicep'
$triesLeft = if ($env:SWITCHBOARD_KEY_WAIT_TRIES) { [int]$env:SWITCHBOARD_KEY_WAIT_TRIES } else { 30 }
$pause = if ($env:SWITCHBOARD_KEY_WAIT_SECONDS) { [int]$env:SWITCHBOARD_KEY_WAIT_SECONDS } else { 10 }

Write-Host "Waiting for the Event Grid extension key of $($env:AZURE_FUNCTION_APP_NAME) ..."
while ($true) {
    $key = az functionapp keys list -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME `
        --query systemKeys.eventgrid_extension -o tsv 2>$null
    if ($key) { break }
    $triesLeft--
    if ($triesLeft -le 0) {
        Write-Error "No eventgrid_extension key on $($env:AZURE_FUNCTION_APP_NAME): check the deployment logs, then run 'azd hooks run postdeploy'."
    }
    # A request wakes the host, which starts the extension and creates the key.
    try { Invoke-WebRequest -UseBasicParsing "https://$($env:AZURE_FUNCTION_APP_NAME).azurewebsites.net/api/openapi.json" | Out-Null } catch { }
    Start-Sleep -Seconds $pause
}

Write-Host "Subscribing $($env:AZURE_FUNCTION_APP_NAME) to the ACS events of $($env:AZURE_EVENTGRID_SYSTEM_TOPIC) ..."
az deployment group create -g $env:AZURE_RESOURCE_GROUP --name switchboard-events --template-file $template `
    --parameters systemTopicName=$env:AZURE_EVENTGRID_SYSTEM_TOPIC functionAppName=$env:AZURE_FUNCTION_APP_NAME `
                 identityName=$env:AZURE_MANAGED_IDENTITY_NAME storageAccountName=$env:AZURE_STORAGE_ACCOUNT_NAME `
    --only-show-errors -o none
if ($LASTEXITCODE -ne 0) {
    Write-Error "Deploying the Event Grid subscriptions failed (the error is above); fix it, then run 'azd hooks run postdeploy'."
}
Write-Host "Event Grid subscriptions are in place: incoming-call, whatsapp-events, sms-events."
