// Switchboard on Azure, per use by default: everything bills by use except the media gateway's one idle replica,
// the container registry and the phone number (docs/cost.md). `azd up` provisions this, deploys both services
// (azure.yaml), then its postdeploy hook deploys the Event Grid subscriptions (modules/events.bicep, infra/hooks/).
// Nothing here depends on what an earlier provision or deploy left in the azd environment: a provision after
// `azd down` sees what a first one sees (docs/deploy.md, "Deploying again after azd down").
//
//   function app (Flex Consumption, Python 3.11) ── Durable task hub ──▶ storage (identity, no keys)
//   media gateway (Container Apps, min 1 replica) ◀── ACS media WebSocket
//   ACS ── Event Grid system topic ──▶ incoming_call, whatsapp_events (the function app's Event Grid triggers)
//   Cosmos DB serverless (customers + session state) | optional Azure Managed Redis
//   Azure AI Services (the chat model, Speech, optional Foundry project) | Application Insights + Log Analytics
//   one user-assigned managed identity with data-plane roles on each; Key Vault for the token secret
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region for everything except ACS and Event Grid (global). Must offer Flex Consumption.')
param location string

@description('Region for Azure AI Services when the model is not offered in `location`. Empty: `location`.')
param aiLocation string = ''

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID). Gets Key Vault Secrets Officer on the vault only.')
param principalId string = ''

@secure()
@description('HMAC secret for signed tokens. azd reads it back from Key Vault on every provision, or makes a random one the first time (main.parameters.json).')
param tokenSecret string

@allowed([
  'none'
  'Balanced_B0'
])
@description('Azure Managed Redis for hot state, or none: the app then keeps hot state, queue counters and processed-event ids in Cosmos DB. Prices per option in docs/cost.md.')
param redisSku string = 'none'

@description('Redis with replication (twice the price). Only used when redisSku is not none.')
param redisHighAvailability bool = false

@minValue(0)
@description('Always-ready instances for incoming_call. 0: the first call after an idle spell waits for a cold start while it rings; 1: no wait, a baseline charge (docs/deploy.md, docs/cost.md).')
param alwaysReadyInstances int = 0

@minValue(40)
@maxValue(1000)
param functionMaxInstances int = 100

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption instance memory; GB-seconds are billed at this size. 512 is accepted by the API (docs/deploy.md says where that was checked), but Durable Functions under load is documented as unpredictable at 512: keep 2048 unless traffic is light.')
param functionInstanceMemoryMB int = 2048

@minValue(1)
@description('Most media gateway replicas; each carries callsPerReplica calls.')
param gatewayMaxReplicas int = 3

@minValue(1)
@description('Calls a gateway replica takes before another starts. bench/gateway.py measures ~21 ms of CPU per call-second, so 5 calls keep a 0.25 vCPU replica near 40% busy, with headroom for real-time frame pacing.')
param gatewayCallsPerReplica int = 5

@description('Port the media gateway listens on in its container (GATEWAY_PORT).')
param gatewayPort int = 8765

@description('Whether the gateway container app exists already (SERVICE_GATEWAY_RESOURCE_EXISTS, which azd sets before every provision). True: keep the image it runs; false: start it on the placeholder.')
param gatewayExists bool = false

// The chat model. Defaults read from the Microsoft Foundry model retirement schedule: gpt-4.1-mini 2025-04-14 is a
// non-reasoning model (what the OpenAI policy's requests and API version are written for) that new deployments
// can still get, retiring 2027-04-14. docs/deploy.md ("The chat model") says when and how to move.
@description('Model to deploy (AZURE_OPENAI_MODEL).')
param chatModelName string = 'gpt-4.1-mini'

@description('Version of that model (AZURE_OPENAI_MODEL_VERSION).')
param chatModelVersion string = '2025-04-14'

@allowed([
  'GlobalStandard'
  'DataZoneStandard'
  'Standard'
])
@description('Deployment type (AZURE_OPENAI_MODEL_SKU), all billed per token: GlobalStandard may process anywhere, DataZoneStandard within the data zone, Standard in the region.')
param chatModelSku string = 'GlobalStandard'

@description('Thousands of tokens per minute for the deployment (AZURE_OPENAI_MODEL_CAPACITY; a quota, not a price).')
param chatModelCapacity int = 30

@description('Name of the model deployment (SWITCHBOARD_MODEL_DEPLOYMENT). Empty: the model name, so a new model gets a new deployment and the app follows it.')
param chatModelDeployment string = ''

@description('Create an AI Foundry project on the AI Services account (for azure-ai-projects). The foundry policy creates it anyway.')
param deployFoundryProject bool = false

@description('Who writes the agents\' replies (SWITCHBOARD_POLICY in the app; azd env SWITCHBOARD_AGENT_POLICY): openai (the chat model directly) or foundry (Foundry agents, one conversation per customer across channels; docs/deploy.md).')
@allowed(['openai', 'foundry'])
param policy string = 'openai'

// The Foundry policy needs the project; the project alone (deployFoundryProject) leaves the policy as chosen.
var useFoundry = policy == 'foundry' || deployFoundryProject

@description('Geography where ACS keeps data at rest.')
param acsDataLocation string = 'United States'

@description('Channel registration id of the WhatsApp number, once registered on the ACS resource (docs/deploy.md).')
param whatsappChannelId string = ''

@description('The SMS-capable number on the ACS resource (E.164, e.g. +18005550100), once acquired and verified (docs/sms.md). Empty: nothing is texted.')
param smsFromNumber string = ''

@description('Scenario folder the agents come from (SWITCHBOARD_SCENARIO).')
param scenario string = 'utilities'

@description('Application (client) id of the desk\'s Entra app registration, with app roles desk.agent and desk.supervisor (docs/desk.md). Empty: the desk has no sign-in and answers 401 to everyone.')
param deskAuthClientId string = ''

var tags = {
  'azd-env-name': environmentName
}
var token = toLower(uniqueString(subscription().id, environmentName, location))
var useRedis = redisSku != 'none'
var chatDeployment = empty(chatModelDeployment) ? chatModelName : chatModelDeployment

var names = {
  identity: 'id-${token}'
  logAnalytics: 'log-${token}'
  appInsights: 'appi-${token}'
  storage: 'st${token}'
  keyVault: 'kv-${token}'
  cosmos: 'cosmos-${token}'
  redis: 'redis-${token}'
  ai: 'ai-${token}'
  acs: 'acs-${token}'
  systemTopic: 'evgt-acs-${token}'
  registry: 'cr${token}'
  containerEnv: 'cae-${token}'
  gateway: 'ca-gw-${token}'
  functionApp: 'func-${token}'
  plan: 'plan-${token}'
  foundryProject: 'switchboard'
}
var cosmosDatabase = 'switchboard'
var customersContainer = 'customers'
var sessionsContainer = 'sessions'
var taskHubName = 'switchboard'
var deploymentContainer = 'app-package'
var deadLetterContainer = 'eventgrid-deadletter'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.appInsights
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    deploymentContainerName: deploymentContainer
    deadLetterContainerName: deadLetterContainer
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    userPrincipalId: principalId
    tokenSecret: tokenSecret
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    accountName: names.cosmos
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    databaseName: cosmosDatabase
    customersContainerName: customersContainer
    sessionsContainerName: sessionsContainer
  }
}

module redis 'modules/redis.bicep' = if (useRedis) {
  name: 'redis'
  scope: rg
  params: {
    name: names.redis
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    sku: useRedis ? redisSku : 'Balanced_B0'
    highAvailability: redisHighAvailability
  }
}

module ai 'modules/ai.bicep' = {
  name: 'ai'
  scope: rg
  params: {
    name: names.ai
    location: empty(aiLocation) ? location : aiLocation
    tags: tags
    principalId: identity.outputs.principalId
    identityId: identity.outputs.id
    modelDeploymentName: chatDeployment
    modelName: chatModelName
    modelVersion: chatModelVersion
    modelSku: chatModelSku
    modelCapacity: chatModelCapacity
    deployFoundryProject: useFoundry
    foundryProjectName: names.foundryProject
    deployerPrincipalId: principalId
  }
}

module acs 'modules/acs.bicep' = {
  name: 'acs'
  scope: rg
  params: {
    name: names.acs
    systemTopicName: names.systemTopic
    tags: tags
    principalId: identity.outputs.principalId
    identityId: identity.outputs.id
    dataLocation: acsDataLocation
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: names.registry
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

// After the Key Vault module, and so after the identity's Key Vault Secrets User assignment in it: the gateway's
// first revision reads its Key Vault secret with that identity, and a role assignment takes a while to be honoured.
// Creating the environment takes minutes, so by the time the gateway asks, the assignment has had them.
module containerEnv 'modules/container-env.bicep' = {
  name: 'container-env'
  scope: rg
  dependsOn: [
    keyVault
  ]
  params: {
    name: names.containerEnv
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

// Both compute resources know each other's address up front: the gateway's from the environment's domain, the
// function app's from its name (Flex apps get <name>.azurewebsites.net), so neither waits for the other.
var publicUrl = 'https://${names.functionApp}.azurewebsites.net'
var gatewayPublicUrl = 'wss://${names.gateway}.${containerEnv.outputs.defaultDomain}'

// What the app reads (shared/settings.py SETTINGS), the same for the function app and the gateway. Settings not set
// here keep their defaults, or are local-only, or are keys the identity replaces: tests/infra/test_templates.py
// lists each one with its reason and fails when the code reads a setting that is neither here nor listed there.
var appSettings = union({
  SWITCHBOARD_SCENARIO: scenario
  SWITCHBOARD_PUBLIC_URL: publicUrl
  SWITCHBOARD_POLICY: policy
  LOG_LEVEL: 'INFO'
  AZURE_CLIENT_ID: identity.outputs.clientId
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_DATABASE: cosmosDatabase
  COSMOS_CONTAINER: customersContainer
  COSMOS_STATE_CONTAINER: sessionsContainer
  SESSION_STATE: useRedis ? 'redis' : 'cosmos'
  AZURE_OPENAI_ENDPOINT: ai.outputs.openAiEndpoint
  AZURE_OPENAI_DEPLOYMENT: ai.outputs.modelDeploymentName
  // Empty unless the project exists; with SWITCHBOARD_POLICY=openai the app ignores it.
  AZURE_AI_PROJECT_ENDPOINT: ai.outputs.projectEndpoint
  ACS_ENDPOINT: acs.outputs.endpoint
  ACS_RESOURCE_IMMUTABLE_ID: acs.outputs.immutableResourceId
  WHATSAPP_CHANNEL_ID: whatsappChannelId
  ACS_SMS_FROM: smsFromNumber
  GATEWAY_PUBLIC_URL: gatewayPublicUrl
  GATEWAY_PORT: string(gatewayPort)
  GATEWAY_HOST: '0.0.0.0' // inside its container; the function app ignores it
  // The hard cap per replica: twice the scale-out threshold, headroom while another replica starts.
  GATEWAY_MAX_CALLS: string(gatewayCallsPerReplica * 2)
  SPEECH_ENDPOINT: ai.outputs.endpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
}, useRedis ? {
  // No key in it: the app signs in to Redis with the identity (Entra ID), so this is a plain setting.
  REDIS_URL: redis.outputs.url
} : {})

// Secrets: Key Vault secret URIs. The function app gets Key Vault references, the gateway Container Apps secrets.
var secretSettings = {
  SWITCHBOARD_TOKEN_SECRET: keyVault.outputs.tokenSecretUri
}
var keyVaultReferences = {
  SWITCHBOARD_TOKEN_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.tokenSecretUri})'
}

module functions 'modules/functions.bicep' = {
  name: 'functions'
  scope: rg
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appSettings: appSettings
    keyVaultReferences: keyVaultReferences
    alwaysReadyInstances: alwaysReadyInstances
    maximumInstanceCount: functionMaxInstances
    instanceMemoryMB: functionInstanceMemoryMB
    taskHubName: taskHubName
    deskAuthClientId: deskAuthClientId
  }
}

// What the gateway runs now, read from the app (none before the first deploy or after `azd down`).
module gatewayImage 'modules/gateway-image.bicep' = {
  name: 'gateway-image'
  scope: rg
  params: {
    exists: gatewayExists
    name: names.gateway
  }
}

module gateway 'modules/gateway.bicep' = {
  name: 'gateway'
  scope: rg
  params: {
    name: names.gateway
    location: location
    tags: tags
    environmentId: containerEnv.outputs.id
    identityId: identity.outputs.id
    registryLoginServer: registry.outputs.loginServer
    imageName: gatewayImage.outputs.image
    port: gatewayPort
    maxReplicas: gatewayMaxReplicas
    callsPerReplica: gatewayCallsPerReplica
    appSettings: union(appSettings, {
      OTEL_SERVICE_NAME: 'switchboard-gateway'
    })
    secretSettings: secretSettings
  }
}

// azd writes these to .azure/<env>/.env: the hook reads a few, and a developer can point a local run at the
// deployed services with them. Secrets are not outputs, and neither is AZURE_CLIENT_ID: in a developer's shell it
// would steer azure-identity toward a managed identity their machine does not have. `azd down` deletes every output
// from the environment, so none of them can outlive the resources it names; for the same reason a choice the
// operator makes with `azd env set` is read from a variable that is not an output, except where the value dies with
// the resources (WHATSAPP_CHANNEL_ID, ACS_SMS_FROM) or is also a setting the app reads (SWITCHBOARD_SCENARIO).
// No AZURE_LOCATION output: the region is the operator's choice (azd env new / azd env set), and `azd down` would
// delete it from the environment along with the outputs, so the next `azd up` would ask again.
output AZURE_TENANT_ID string = subscription().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_FUNCTION_APP_NAME string = functions.outputs.name
output AZURE_EVENTGRID_SYSTEM_TOPIC string = acs.outputs.systemTopicName
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_AI_SERVICES_ENDPOINT string = ai.outputs.endpoint
output AZURE_AI_PROJECT_ENDPOINT string = ai.outputs.projectEndpoint
output SERVICE_GATEWAY_NAME string = gateway.outputs.name
output SWITCHBOARD_SCENARIO string = scenario
output SWITCHBOARD_PUBLIC_URL string = publicUrl
output SWITCHBOARD_POLICY string = policy
output LOG_LEVEL string = 'INFO'
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmosDatabase
output COSMOS_CONTAINER string = customersContainer
output COSMOS_STATE_CONTAINER string = sessionsContainer
output SESSION_STATE string = useRedis ? 'redis' : 'cosmos'
output AZURE_OPENAI_ENDPOINT string = ai.outputs.openAiEndpoint
output AZURE_OPENAI_DEPLOYMENT string = ai.outputs.modelDeploymentName
output ACS_ENDPOINT string = acs.outputs.endpoint
output ACS_RESOURCE_IMMUTABLE_ID string = acs.outputs.immutableResourceId
output WHATSAPP_CHANNEL_ID string = whatsappChannelId
output ACS_SMS_FROM string = smsFromNumber
output GATEWAY_PUBLIC_URL string = gatewayPublicUrl
output GATEWAY_PORT string = string(gatewayPort)
output GATEWAY_HOST string = '0.0.0.0'
output GATEWAY_MAX_CALLS string = string(gatewayCallsPerReplica * 2)
output SPEECH_ENDPOINT string = ai.outputs.endpoint
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
