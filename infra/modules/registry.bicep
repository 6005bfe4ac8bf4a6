// The container registry azd pushes the media gateway image to. Basic: a fixed daily price, the cheapest tier.
// The admin user and anonymous pull are off: azd pushes with the developer's Entra login, the container app pulls
// with the managed identity (AcrPull).

param name string
param location string
param tags object
param principalId string

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139: Basic has no private endpoints, and azd pushes from the developer's machine; pushes and pulls need an Entra identity with a registry role.
  // checkov:skip=CKV_AZURE_163: Image scanning is Microsoft Defender for Containers, a paid per-subscription plan; enable it there if you want it.
  // checkov:skip=CKV_AZURE_166: Quarantine is a Premium-only feature (Premium costs ten times Basic); one image built from this repository.
  // checkov:skip=CKV_AZURE_233: Zone redundancy is Premium-only; a registry outage delays a deploy, never a running call.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource pull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, principalId, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
