// The function app on the Flex Consumption plan (FC1): Linux, Python 3.11, scale to zero, billed per execution
// GB-second. Its deployment package and the Durable Functions task hub live in the storage account, reached with the
// managed identity (AzureWebJobsStorage__accountName / __credential / __clientId): no storage key anywhere.
//
// Always-ready instances (alwaysReadyInstances, default 0) are the one trade-off to choose knowingly: an
// IncomingCall must be answered while the phone rings (about half a minute). With 0, the first call after an idle
// spell waits for an instance to start (typically a few seconds); with 1, that start is gone for a baseline charge
// of about $21 a month at 2 GB (docs/cost.md). The always-ready instance is given to the incoming_call function,
// which Flex scales on its own (Event Grid triggers are not in the http group).

param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string

@description('Settings the app reads (shared/settings.py), identical for the function app and the gateway.')
param appSettings object

@description('Secret settings as Key Vault references (@Microsoft.KeyVault(SecretUri=...)), resolved by the platform with the identity.')
param keyVaultReferences object

@minValue(0)
param alwaysReadyInstances int

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

param taskHubName string

@description('Application (client) id of the desk\'s Entra app registration; empty: built-in authentication stays off and nobody can sign in at the desk.')
param deskAuthClientId string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy for Flex Consumption exists only in some regions and is fixed at creation; leaving it off keeps the template deployable in every Flex region.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: Client certificates cannot be required: Event Grid, ACS callbacks and customers' browsers call this app and present none.
  // checkov:skip=CKV_AZURE_62: The app must be reachable from everywhere: Event Grid, ACS and customers' browsers have no fixed addresses.
  // checkov:skip=CKV_AZURE_212: Scaling to zero is the point of the per-use design; alwaysReadyInstances keeps instances warm when wanted.
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check; the platform replaces failed instances itself.
  // checkov:skip=CKV_AZURE_222: Public network access is required for the webhooks and the web chat; each endpoint authenticates its caller (Event Grid system key, signed tokens, function keys).
  // checkov:skip=CKV_AZURE_78: siteConfig.ftpsState is not set because Flex Consumption refuses it (ARM error 51021 on newer stamps) and the official Flex samples set none of it; FTP publishing is off anyway through the ftp and scm basicPublishingCredentialsPolicies below, and Flex deploys from a blob container.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'functions'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    // No ftpsState here: Flex Consumption rejects it (see the CKV_AZURE_78 skip above); FTP is off below.
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyInstances > 0 ? [
          {
            name: 'function:incoming_call'
            instanceCount: alwaysReadyInstances
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// The Functions host's own settings, then the app's. Flex Consumption sets the worker runtime and the extension
// version from functionAppConfig, and refuses FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION as settings.
var hostSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  TASKHUB_NAME: taskHubName
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  OTEL_SERVICE_NAME: 'switchboard-functions'
}

// checkov applies its App Service "web" configuration checks to every sites/config resource; this one holds app
// settings only, so each skip below says why the feature it asks for does not fit this function app.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: App Service Authentication is configured on the authsettingsV2 resource below (the desk's Entra sign-in); checkov asks for it on every sites/config resource, and this one holds app settings only.
  // checkov:skip=CKV_AZURE_222: Public network access is set on the site (see its skip); this resource holds app settings only.
  // checkov:skip=CKV_AZURE_63: App Service web-server HTTP logs are not how a function app is observed; every request is recorded in Application Insights.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are an App Service web-server feature; function failures and their stack traces are recorded in Application Insights.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is an App Service web-server feature; failed invocations are recorded in Application Insights.
  // checkov:skip=CKV_AZURE_80: A .NET Framework version does not apply to a Python app.
  // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container and uses no Azure Files share.
  parent: functionApp
  name: 'appsettings'
  properties: union(hostSettings, appSettings, keyVaultReferences)
}

// azd deploys with the developer's Entra login; basic (FTP / SCM password) publishing stays off.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName

// Sign-in at the desk (docs/desk.md, "Signing in"): App Service built-in authentication with Microsoft Entra ID.
// Requests without a sign-in are let through, since customers, Event Grid and ACS call this app anonymously and
// each of those routes checks its own credential; the platform only vouches for who is signed in, by injecting the
// X-MS-CLIENT-PRINCIPAL headers (and removing any a client sent), and the desk's routes check them themselves. The
// customer and webhook routes are excluded from the module, so the tokens they carry in Authorization (the web chat
// token, ACS's JWT) are never read as Entra tokens. People sign in through /.auth/login/aad; the app registration's
// app roles desk.agent and desk.supervisor decide what they may do at the desk.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(deskAuthClientId)) {
  // checkov:skip=CKV_AZURE_13: This is the authentication: checkov reads the older authsettings shape (properties.enabled), while authsettingsV2 turns it on with platform.enabled, which is true here.
  // checkov:skip=CKV_AZURE_222: Public network access is set on the site (see its skip); this resource holds the sign-in settings only.
  // checkov:skip=CKV_AZURE_63: App Service web-server HTTP logs are not how a function app is observed; every request is recorded in Application Insights.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are an App Service web-server feature; function failures and their stack traces are recorded in Application Insights.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is an App Service web-server feature; failed invocations are recorded in Application Insights.
  // checkov:skip=CKV_AZURE_80: A .NET Framework version does not apply to a Python app.
  // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container and uses no Azure Files share.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
      excludedPaths: [
        '/api/webchat'
        '/api/webchat/*'
        '/api/calls/*'
        '/api/handoffs'
        '/api/handoffs/*'
        '/api/ops/*'
        '/api/openapi.json'
        '/runtime/webhooks/*'
      ]
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: deskAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            deskAuthClientId
            'api://${deskAuthClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
      cookieExpiration: {
        convention: 'FixedTime'
        timeToExpiration: '08:00:00'
      }
      preserveUrlFragmentsForLogins: false
    }
  }
}
