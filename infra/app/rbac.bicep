// Data-plane roles for the app's identity (management roles such as Owner do not grant data access), plus optional
// read access for the deployer so the ledger can be read in Storage Explorer without shared keys.
param storageAccountName string
param applicationInsightsName string

@description('Object id of the app\'s user-assigned managed identity.')
param managedIdentityPrincipalId string

@description('Object id of the deployer (azd sets AZURE_PRINCIPAL_ID); empty for none.')
param deployerPrincipalId string = ''

// Built-in role definition ids (the same in every Azure cloud).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var storageTableDataReader = '76199698-9eea-4c19-bc75-cec21354c6b6'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

// Blob Data Owner: the host's keys, timer locks and leases, the deployment package, provisioning-logs.
// Queue Data Contributor: the queue trigger, re-enqueueing with a delay, the poison queues.
// Table Data Contributor: the ledger and the limiter rows.
var appStorageRoles = [
  storageBlobDataOwner
  storageQueueDataContributor
  storageTableDataContributor
]

var deployerStorageRoles = empty(deployerPrincipalId) ? [] : [
  storageTableDataReader
  storageBlobDataReader
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appStorageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in appStorageRoles: {
    name: guid(storage.id, managedIdentityPrincipalId, roleId)
    scope: storage
    properties: {
      principalId: managedIdentityPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    }
  }
]

resource appInsightsAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, managedIdentityPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

resource deployerStorageAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in deployerStorageRoles: {
    name: guid(storage.id, deployerPrincipalId, roleId)
    scope: storage
    properties: {
      principalId: deployerPrincipalId
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    }
  }
]
