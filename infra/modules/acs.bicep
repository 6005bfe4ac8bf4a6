// Azure Communication Services (phone numbers, Call Automation, Advanced Messaging for WhatsApp) and the Event Grid
// system topic that publishes its events. The subscriptions that deliver those events to the function app are in
// events.bicep: they can only be created once the app's code is deployed (the endpoint must answer the
// validation handshake), so azd's postdeploy hook adds them (infra/hooks/postdeploy.sh).

param name string
param systemTopicName string
param tags object
param principalId string
param identityId string

@description('Where ACS keeps data at rest (a geography, e.g. United States, Europe).')
param dataLocation string

resource acs 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: 'global'
  tags: tags
  // The topic dead-letters undeliverable events into storage as this identity (no storage key anywhere).
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    source: acs.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

// Communication and Email Service Owner, scoped to this one resource. ACS's authentication page lists Microsoft
// Entra ID for Call Automation, Advanced Messaging and SMS but names no role for them; the one Microsoft text found
// that names a role says this one "gives access to all Communication and Email service operations" (the SMTP
// how-to), and Azure's own SDK live tests use Contributor. That this is the narrowest role that works for Call
// Automation and Advanced Messaging is unverified: docs/deploy.md ("What was checked, and where") says what was read.
var communicationOwner = '09976791-48a7-449e-bb21-39d1a415f350'

resource appUsesAcs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acs.id, principalId, communicationOwner)
  scope: acs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', communicationOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output id string = acs.id
output name string = acs.name
output endpoint string = 'https://${acs.properties.hostName}'
output immutableResourceId string = acs.properties.immutableResourceId
output systemTopicName string = systemTopic.name
