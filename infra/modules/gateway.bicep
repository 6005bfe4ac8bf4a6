// The media gateway: the one always-warm piece. ACS opens a WebSocket to it for every answered call, and a call
// cannot wait for a cold start, so it keeps one replica (min 1) on the smallest size and scales out on concurrent
// connections up to maxReplicas. Between calls the replica is idle and billed at the idle rate (docs/cost.md).
//
// The first provision has no gateway image yet (azd builds and pushes it in the deploy step that follows), so the
// app starts on a public placeholder. The ingress port and the /healthz probes are the gateway's own from that
// first provision on: `azd deploy` swaps only the image of the app it finds (every other property stays), so they
// must be right before it. The placeholder is Microsoft's ASP.NET sample (mcr.microsoft.com/dotnet/samples), which
// listens on the port ASPNETCORE_HTTP_PORTS names and answers GET /healthz, so it passes the same probes on the
// same port. docs/deploy.md ("The gateway's first revision") says why this over the alternatives.

param name string
param location string
param tags object
param environmentId string
param identityId string
param registryLoginServer string

@description('Image the app runs now (gateway-image.bicep reads it from the live app). Empty before the first deploy: the placeholder runs.')
param imageName string

@description('Port the gateway listens on inside the container (GATEWAY_PORT).')
param port int

@minValue(1)
param maxReplicas int

@description('Concurrent WebSocket connections (calls) per replica before another replica starts.')
param callsPerReplica int

@description('Plain settings, as environment variables (the same as the function app\'s).')
param appSettings object

@description('Setting name -> Key Vault secret URI, mounted as Container Apps secrets read with the identity.')
param secretSettings object

var placeholderImage = 'mcr.microsoft.com/dotnet/samples:aspnetapp'
var image = empty(imageName) ? placeholderImage : imageName
var usesPlaceholder = image == placeholderImage

// Container Apps secret names: lowercase letters, digits and dashes.
var secrets = [for item in items(secretSettings): {
  name: toLower(replace(item.key, '_', '-'))
  keyVaultUrl: item.value
  identity: identityId
}]
var secretEnv = [for item in items(secretSettings): {
  name: item.key
  secretRef: toLower(replace(item.key, '_', '-'))
}]
var plainEnv = [for item in items(appSettings): {
  name: item.key
  value: item.value
}]
// Only while the placeholder runs: the port it listens on. The gateway ignores it; the next provision after a deploy
// drops it.
var placeholderEnv = usesPlaceholder ? [
  {
    name: 'ASPNETCORE_HTTP_PORTS'
    value: string(port)
  }
] : []

resource gateway 'Microsoft.App/containerApps@2024-03-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'gateway'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: environmentId
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        // The gateway's port from the first revision on (the placeholder listens there too). 'auto' carries WebSocket
        // upgrades.
        targetPort: port
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        {
          server: registryLoginServer
          identity: identityId
        }
      ]
      secrets: secrets
    }
    template: {
      containers: [
        {
          name: 'gateway'
          image: image
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: concat(plainEnv, secretEnv, placeholderEnv)
          // The gateway's /healthz (the placeholder answers it too). Readiness keeps calls off a replica that is
          // still starting; liveness restarts one that stopped answering.
          probes: [
            {
              type: 'Readiness'
              httpGet: {
                path: '/healthz'
                port: port
              }
              periodSeconds: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: port
              }
              periodSeconds: 30
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: 1 // always warm: a call cannot wait for a replica to start
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'concurrent-calls'
            http: {
              metadata: {
                concurrentRequests: string(callsPerReplica)
              }
            }
          }
        ]
      }
    }
  }
}

output name string = gateway.name
output fqdn string = gateway.properties.configuration.ingress.fqdn
