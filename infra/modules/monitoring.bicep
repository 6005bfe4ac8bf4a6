// Log Analytics + workspace-based Application Insights. The Functions host and the app's OpenTelemetry exporter both
// read APPLICATIONINSIGHTS_CONNECTION_STRING; the host authenticates with the managed identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), for which the identity holds Monitoring Metrics Publisher here.

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object
param principalId string

@description('Days Log Analytics keeps data. 30 is included in the ingestion price; longer retention is billed.')
param retentionInDays int = 30

@description('Daily ingestion cap in GB, so a log storm cannot run up the bill. -1 means no cap.')
param dailyQuotaGb int = 1

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Left on: the connection string is an ingestion-only identifier (it can write telemetry, not read it), and an
    // exporter that cannot yet present an Entra token still gets its data in. The host uses Entra (see above).
    DisableLocalAuth: false
  }
}

// Monitoring Metrics Publisher: lets the identity send telemetry with an Entra token.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output applicationInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
