// Key Vault (RBAC) for the secrets identity cannot replace: SWITCHBOARD_TOKEN_SECRET (the HMAC key of every signed
// token) and, only when Redis is deployed, the Redis URL with its access key. App settings reference them
// (@Microsoft.KeyVault(...)) and the container app mounts them as secrets; neither ever holds the value.

param name string
param location string
param tags object
param principalId string

@description('Object id of the person running azd. Gets Key Vault Secrets Officer, so the next `azd provision` can read the token secret back (azd secretOrRandomPassword) instead of minting a new one. Empty: none.')
param userPrincipalId string = ''

@secure()
param tokenSecret string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: The Functions platform resolves Key Vault references and Container Apps pulls secrets over the public endpoint (neither is a "trusted service" that bypasses the firewall); without a VNet the firewall must allow them. Access is Entra RBAC only.
  // checkov:skip=CKV_AZURE_189: Same as CKV_AZURE_109: public network access is how the platform reads the references, and there is no VNet in this per-use design.
  // checkov:skip=CKV_AZURE_110: Purge protection would make `azd down --purge` fail and keep the vault name taken for the retention period, so a torn-down environment could not be recreated under its name. Soft delete stays on; the one secret can be regenerated (docs/deploy.md).
  // checkov:skip=CKV_AZURE_42: Recoverable means soft delete plus purge protection; soft delete is on, purge protection is off for the reason given for CKV_AZURE_110.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource tokenSecretItem 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: An expiry would turn every signed token invalid at a moment nobody chose and stop the app reading its own key; rotation is an operator action (docs/deploy.md) because it also ends every live web chat session.
  parent: vault
  name: 'switchboard-token-secret'
  properties: {
    value: tokenSecret
    contentType: 'text/plain'
  }
}

var secretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var secretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

// Key Vault Secrets User: the app (Functions Key Vault references, Container Apps secrets) reads secret values.
resource appReadsSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, secretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerManagesSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, secretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficer)
    principalId: userPrincipalId
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
output tokenSecretUri string = tokenSecretItem.properties.secretUri
