// The one user-assigned managed identity every Switchboard component runs as. Each module that creates a service
// grants this identity the narrowest data-plane role that service offers, scoped to that one resource.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
