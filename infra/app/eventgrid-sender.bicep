// Lets the app's identity publish to an Event Grid topic (new or existing, in this module's resource group) and
// hands back the topic's endpoint for EVENTGRID_TOPIC_ENDPOINT. EventGrid Data Sender is the least privileged
// role that can publish: it cannot read, manage or subscribe to the topic.
param topicName string

@description('Object id of the app\'s user-assigned managed identity.')
param principalId string

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource senderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, eventGridDataSender)
  scope: topic
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
  }
}

output endpoint string = topic.properties.endpoint
