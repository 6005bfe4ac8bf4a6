// Event Grid subscriptions from the ACS system topic to the function app's Event Grid triggers:
//   Microsoft.Communication.IncomingCall                  -> incoming_call    (functions/calls.py)
//   Microsoft.Communication.AdvancedMessageReceived       -> whatsapp_events  (functions/whatsapp.py)
//   Microsoft.Communication.AdvancedMessageDeliveryStatusUpdated -> whatsapp_events
//   Microsoft.Communication.SMSReceived                   -> sms_events       (functions/sms.py)
//   Microsoft.Communication.SMSDeliveryReportReceived     -> sms_events
// The endpoint is the Functions host's Event Grid webhook, authenticated by the host's `eventgrid_extension` system
// key in the URL. That key is read here with listKeys: Event Grid cannot present a managed identity to the host's
// webhook, and the key only exists once the code is deployed. So this template is not part of main.bicep: azd's
// postdeploy hook (infra/hooks/postdeploy.sh, .ps1) deploys it into the resource group with `az deployment group
// create` after every deploy, once the key exists. Deploying it again changes nothing that is already right, and
// nothing about it is remembered in the azd environment, so an environment that went through `azd down` gets its
// subscriptions back with the next `azd up`. It takes names (the azd outputs the hook reads) and finds the rest.
// Undeliverable events go to a storage container (written with the managed identity), never dropped silently.

@description('The ACS Event Grid system topic (AZURE_EVENTGRID_SYSTEM_TOPIC).')
param systemTopicName string

@description('The function app whose Event Grid triggers receive the events (AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('The user-assigned identity the topic dead-letters as (AZURE_MANAGED_IDENTITY_NAME).')
param identityName string

@description('The storage account holding the dead-letter container (AZURE_STORAGE_ACCOUNT_NAME).')
param storageAccountName string

@description('Blob container for undeliverable events; main.bicep creates it under this name.')
param deadLetterContainerName string = 'eventgrid-deadletter'

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: functionApp
  name: 'default'
}

var webhookBase = 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/EventGrid'
var systemKey = functionHost.listKeys().systemKeys.eventgrid_extension

var deadLetter = {
  identity: {
    type: 'UserAssigned'
    userAssignedIdentity: identity.id
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: storage.id
      blobContainerName: deadLetterContainerName
    }
  }
}

// A call rings for about half a minute: a delivery that arrives later can only answer a call that has gone.
// Try for one minute (Event Grid's shortest time-to-live), then dead-letter for the record.
resource incomingCall 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'incoming-call'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: '${webhookBase}?functionName=incoming_call&code=${systemKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.IncomingCall'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 5
      eventTimeToLiveInMinutes: 1
    }
    deadLetterWithResourceIdentity: deadLetter
  }
}

// A WhatsApp message is worth delivering late: retry for a day (Event Grid's defaults), the handler dedups by id.
resource whatsapp 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'whatsapp-events'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: '${webhookBase}?functionName=whatsapp_events&code=${systemKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.AdvancedMessageReceived'
        'Microsoft.Communication.AdvancedMessageDeliveryStatusUpdated'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: deadLetter
  }
}

// A text is worth answering late too, and a delivery report is worth recording: the same day of retries. The
// subscription exists before a number does; with no SMS number on the resource it simply receives nothing.
resource sms 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'sms-events'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: '${webhookBase}?functionName=sms_events&code=${systemKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.SMSReceived'
        'Microsoft.Communication.SMSDeliveryReportReceived'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: deadLetter
  }
}

output incomingCallSubscription string = incomingCall.name
output whatsappSubscription string = whatsapp.name
output smsSubscription string = sms.name
