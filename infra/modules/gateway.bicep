// The media gateway: the one always-warm piece. ACS opens a WebSocket to it for every answered call, and a call
// cannot wait for a cold start, so it keeps one replica (min 1) on the smallest size and scales out on concurrent
// connections up to maxReplicas. Between calls the replica is idle and billed at the idle rate (docs/cost.md).

param name string
param location string
param tags object
param environmentId string
param identityId string
param registryLoginServer string

@description('Image azd deployed (SERVICE_GATEWAY_IMAGE_NAME). Empty before the first deploy: a placeholder runs.')
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

var placeholderImage = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
var usesPlaceholder = empty(imageName)

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
        // The placeholder listens on 80; the gateway on its own port. 'auto' carries WebSocket upgrades.
        targetPort: usesPlaceholder ? 80 : port
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
          image: usesPlaceholder ? placeholderImage : imageName
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: concat(plainEnv, secretEnv)
          // The gateway's own /healthz once it runs (the placeholder has none). Readiness keeps calls off a
          // replica that is still starting.
          probes: usesPlaceholder ? [] : [
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
