// An Event Grid topic for the outcome events (issue 14: one CloudEvents 1.0 event per request that reaches a
// terminal status, type provisioning.request.finished). CloudEvents schema, Entra-only publishing (local auth
// off: no access key exists); the app's identity gets EventGrid Data Sender in app/eventgrid-sender.bicep.
param name string
param location string
param tags object = {}

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193:The Flex Consumption app has no VNet integration in this template, so it publishes over the public endpoint; local auth is off, so only Entra identities holding EventGrid Data Sender can publish.
  name: name
  location: location
  tags: tags
  // The topic's own identity, for subscriptions that deliver to Azure destinations (a storage queue, Service Bus)
  // or dead-letter with it instead of keys; it has no role until a subscriber grants one.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
