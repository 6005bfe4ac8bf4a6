// Azure Managed Redis for hot session state, deployed only when redisSku is not 'none' (main.bicep).
// Azure Cache for Redis (Basic/Standard/Premium) is not offered: it retires on 2028-09-30, and a tenant that had no
// cache before 2026-04-01 can no longer create one; Azure Managed Redis is its successor.
//
// EnterpriseCluster policy: one endpoint that proxies every shard, so the app's plain (non-cluster) redis-py client
// works. Eviction off: processed-event ids must not be evicted early.
//
// Authentication: the identity gets the database's default access policy (Entra ID), ready for the app. Today the
// app's Redis adapter (shared/stores/azure_redis.py) connects with a password in REDIS_URL, so access keys stay on
// and the URL with the key is written to Key Vault, never to an app setting. Drop both once the adapter
// authenticates with the identity.

param name string
param location string
param tags object
param principalId string
param keyVaultName string

@allowed([
  'Balanced_B0'
])
param sku string

@description('Two nodes with replication. Off halves the price; a restart then loses hot state (which the app rebuilds from Cosmos: customer records and collected data are never in Redis).')
param highAvailability bool

resource cluster 'Microsoft.Cache/redisEnterprise@2024-09-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability ? 'Enabled' : 'Disabled'
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2024-09-01-preview' = {
  parent: cluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Enabled'
  }
}

resource accessPolicy 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2024-09-01-preview' = {
  parent: database
  name: principalId
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: principalId
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource redisUrl 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: The value follows the Redis access key, which does not expire; an expiry would cut the app off Redis at a moment nobody chose. Regenerating the key and re-running `azd provision` rotates it.
  parent: vault
  name: 'redis-url'
  properties: {
    // The one key read in these templates: identity is possible on the Redis side, not yet in the app (see above).
    value: 'rediss://:${database.listKeys().primaryKey}@${cluster.properties.hostName}:10000/0'
    contentType: 'text/plain'
  }
}

output hostName string = cluster.properties.hostName
output urlSecretUri string = redisUrl.properties.secretUri
