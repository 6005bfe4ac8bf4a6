// Azure Managed Redis for hot session state, deployed only when redisSku is not 'none' (main.bicep).
// Azure Cache for Redis (Basic/Standard/Premium) is not offered: it retires on 2028-09-30, and a tenant that had no
// cache before 2026-04-01 can no longer create one; Azure Managed Redis is its successor.
//
// EnterpriseCluster policy: one endpoint that proxies every shard, so the app's plain (non-cluster) redis-py client
// works. Eviction off: processed-event ids must not be evicted early.
//
// Authentication: Microsoft Entra ID only. The identity gets the database's default access policy, and the app's
// Redis adapter (shared/stores/azure_redis.py) signs in as it with a token (a rediss:// REDIS_URL without a
// password). Access keys are off, so there is no key to leak, store or rotate, and REDIS_URL is a plain setting.
//
// API version 2025-07-01 is a GA (stable) version of Microsoft.Cache/redisEnterprise; this module used the
// 2024-09-01-preview before. docs/deploy.md ("What was checked, and where") says where each fact here was read.

param name string
param location string
param tags object
param principalId string

@allowed([
  'Balanced_B0'
])
param sku string

@description('Two nodes with replication. Off halves the price; a restart then loses hot state (which the app rebuilds from Cosmos: customer records and collected data are never in Redis).')
param highAvailability bool

resource cluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
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

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: cluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Disabled'
  }
}

// The assignment's name must match ^[A-Za-z0-9]{1,60}$ (AccessPolicyAssignmentNameParameter in the API spec): a
// principal id is a GUID, whose hyphens the API refuses. uniqueString gives 13 letters and digits, stable for the
// same database and principal, so a later provision updates the same assignment.
resource accessPolicy 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = {
  parent: database
  name: uniqueString(database.id, principalId)
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: principalId
    }
  }
}

output hostName string = cluster.properties.hostName
// What the app connects to: TLS on the database port, no password (it signs in with the identity).
output url string = 'rediss://${cluster.properties.hostName}:10000/0'
