// Cosmos DB for NoSQL, serverless: billed per request unit and GB stored, nothing while idle.
//   customers: the customer record, its sessions' bodies and identity claims, partitioned on /customer_id
//              (shared/stores/azure_cosmos.py): TTL on with no default (-1), so only an anonymous visitor's items
//              and closed sessions past their retention expire, by their own `ttl`.
//   sessions:  SessionState when Redis is off (shared/stores/azure_cosmos_state.py): partitioned on /id, TTL on
//              with no default (-1), so items expire by their own `ttl` and counters never do.
// Keys are disabled; the identity holds the built-in data contributor role through a Cosmos SQL role assignment.

param accountName string
param location string
param tags object
param principalId string
param databaseName string
param customersContainerName string
param sessionsContainerName string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  // checkov:skip=CKV_AZURE_99: No IP or VNet filter: Flex Consumption and Container Apps without a VNet call from shared outbound addresses that change; keys are disabled, so every request needs an Entra token with a data-plane role.
  // checkov:skip=CKV_AZURE_101: Public network access stays enabled for the reason given for CKV_AZURE_99 (no VNet and no private endpoints in a per-use design).
  // checkov:skip=CKV_AZURE_100: Data is encrypted at rest with Microsoft-managed keys; customer-managed keys need a Key Vault key, purge protection and extra operations for no gain in this threat model.
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    publicNetworkAccess: 'Enabled'
    minimalTlsVersion: 'Tls12'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource customers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: customersContainerName
  properties: {
    resource: {
      id: customersContainerName
      partitionKey: {
        paths: [
          '/customer_id'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: -1
    }
  }
}

resource sessions 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: sessionsContainerName
  properties: {
    resource: {
      id: sessionsContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: -1
    }
  }
}

// Cosmos DB Built-in Data Contributor (a Cosmos SQL role, not an Azure RBAC role): read and write items, no
// control-plane rights. Scoped to the account.
resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, principalId, '00000000-0000-0000-0000-000000000002')
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    principalId: principalId
    scope: account.id
  }
}

output endpoint string = account.properties.documentEndpoint
output name string = account.name
output databaseName string = database.name
output customersContainerName string = customers.name
output sessionsContainerName string = sessions.name
