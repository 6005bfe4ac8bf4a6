// One Azure AI Services account serves both the chat model (Azure OpenAI API) and Speech (STT/TTS for the media
// gateway), with an optional AI Foundry project for azure-ai-projects. Local (key) auth is disabled: the identity
// holds Cognitive Services OpenAI User and Speech User, and Azure AI User when the project exists.
// The custom subdomain is what makes Entra ID tokens work for Speech and OpenAI alike.

param name string
param location string
param tags object
param principalId string
param identityId string

@description('Chat model deployment name (what AZURE_OPENAI_DEPLOYMENT names).')
param modelDeploymentName string

@description('Model name and version deployed under modelDeploymentName.')
param modelName string
param modelVersion string

@description('Deployment type (the deployment SKU): GlobalStandard, DataZoneStandard or Standard, all billed per token.')
param modelSku string

@description('Deployment capacity in thousands of tokens per minute (a quota: the pay-per-token types bill per token, not per capacity).')
param modelCapacity int

param deployFoundryProject bool
param foundryProjectName string
@description('The person running azd: Azure AI User on the project, so the postdeploy hook can sync the agents. Empty: none.')
param deployerPrincipalId string = ''

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  // checkov:skip=CKV_AZURE_134: Public network access stays enabled: the function app and the container app have no VNet in this per-use design. Local auth is disabled, so only Entra tokens with a data-plane role are accepted.
  name: name
  location: location
  tags: tags
  kind: 'AIServices'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    allowProjectManagement: deployFoundryProject
  }
}

resource chatModel 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = {
  parent: account
  name: modelDeploymentName
  sku: {
    name: modelSku
    capacity: modelCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
  }
}

resource project 'Microsoft.CognitiveServices/accounts/projects@2025-06-01' = if (deployFoundryProject) {
  parent: account
  name: foundryProjectName
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: foundryProjectName
    description: 'Switchboard agents (azure-ai-projects)'
  }
}

var roles = {
  openAiUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
  speechUser: 'f2dc8367-1007-4938-bd23-fe263f013447'
  azureAiUser: '53ca6127-db72-4b80-b1b0-d745d6d5456d'
}

resource openAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.openAiUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.openAiUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource speechUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.speechUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.speechUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Azure AI User on the project only, not the account: running agents (responses, conversations) and creating their
// versions are data actions within the project; nothing else on the account needs it.
resource aiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFoundryProject) {
  name: guid(project.id, principalId, roles.azureAiUser)
  scope: project
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureAiUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployFoundryProject && !empty(deployerPrincipalId)) {
  name: guid(project.id, deployerPrincipalId, roles.azureAiUser)
  scope: project
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureAiUser)
    principalId: deployerPrincipalId
    principalType: 'User'
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output openAiEndpoint string = 'https://${account.properties.customSubDomainName}.openai.azure.com/'
output modelDeploymentName string = chatModel.name
output projectEndpoint string = deployFoundryProject ? 'https://${account.properties.customSubDomainName}.services.ai.azure.com/api/projects/${foundryProjectName}' : ''
