// provision-on-demand: everything `azd up` creates. Subscription scope so one command creates the resource group
// too. Raw resources only (no br/public: modules) so nothing but the Graph extension is fetched at build time.
// Step by step, with every parameter: docs/deploy.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of the deployer (azd sets AZURE_PRINCIPAL_ID): gets read access to the ledger table and the provisioning logs. Empty: none.')
param principalId string = ''

@description('Most instances the app may scale out to (Flex Consumption allows 40 to 1000). Graph calls are paced by the shared limiter whatever this is.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('HTTP requests one instance serves at once. Flex runs Python at 1 by default; this app is async and Prefer: wait holds requests, so 16 (it lets at most 8 of them wait).')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('PUBLIC_BASE_URL: the https base callers use (custom domain, Front Door, API Management). Empty: the function app\'s default host name.')
param publicBaseUrl string = ''

@description('Storage replication; Standard_LRS where the region has no zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
])
param storageSkuName string = 'Standard_ZRS'

@description('Grant the Graph app role through the Microsoft Graph Bicep extension. false: sovereign clouds, or a deployer without AppRoleAssignment.ReadWrite.All; then run scripts/grant-graph-permission.')
param grantGraphPermission bool = true

@description('Graph application permission for provisionOnDemand. Application.ReadWrite.OwnedBy is least privileged but also needs the identity to own each target\'s service principal (scripts/grant-graph-permission does that).')
@allowed([
  'Synchronization.ReadWrite.All'
  'Application.ReadWrite.OwnedBy'
])
param graphPermission string = 'Synchronization.ReadWrite.All'

@description('PROVISIONING_TARGETS as JSON: {"name": {"servicePrincipalId": "...", "jobId": "...", "ruleId": "..."}}. Wins over provisioningTargetsBase64.')
param provisioningTargets string = ''

@description('PROVISIONING_TARGETS as base64 of the JSON, so the JSON survives azd\'s text substitution into main.parameters.json.')
param provisioningTargetsBase64 string = ''

@description('GRAPH_CLOUD: which Microsoft Graph the app calls (token scope follows).')
@allowed([
  'Global'
  'USGov'
  'USGovDoD'
  'China'
])
param graphCloud string = 'Global'

@description('GRAPH_RATE_LIMIT: provisionOnDemand calls per window, e.g. 5/10s (the documented limit).')
param graphRateLimit string = '5/10s'

@description('GRAPH_RATE_SCOPE: tenant (one budget for all jobs, the conservative reading) or job.')
@allowed([
  'tenant'
  'job'
])
param graphRateScope string = 'tenant'

@description('ALLOW_UNLISTED_TARGETS: accept servicePrincipalId/jobId pairs that are not in PROVISIONING_TARGETS.')
param allowUnlistedTargets bool = false

@description('LEDGER_RETENTION_DAYS: days a finished request stays in the ledger.')
@minValue(1)
param ledgerRetentionDays int = 90

// --- Who may call (issue 12): App Service Authentication with Entra ID, or function keys only ---------------------

@description('AUTH_MODE: entra (default: App Service Authentication requires an Entra ID token on every route but /api/health; app roles Provisioning.Submit and Provisioning.Operate) or keys (opt-in fallback: function keys only).')
@allowed([
  'entra'
  'keys'
])
param authMode string = 'entra'

@description('Client id of an existing Entra app registration for the API (entra mode). Empty: the template creates one through the Microsoft Graph Bicep extension (public cloud; the deployer needs Application.ReadWrite.All). Not named AUTH_CLIENT_ID in azd: that is the output azd writes back, which would turn the template\'s own registration into an "existing" one on the next provision.')
param existingAuthClientId string = ''

@description('Application ID URI of that existing registration (accepted as token audience besides its client id). Ignored when the template creates the registration.')
param existingAuthApplicationIdUri string = ''

@description('Comma-separated object ids (a Logic App\'s managed identity, users, groups) granted Provisioning.Submit on the registration the template creates.')
param authSubmitterPrincipalIds string = ''

@description('Comma-separated object ids granted Provisioning.Operate (operator routes, console) on the registration the template creates.')
param authOperatorPrincipalIds string = ''

// --- Events, callbacks, schedules (issue 14) ------------------------------------------------------------------

@description('CALLBACK_ALLOWED_HOSTS: hosts a request\'s callbackUrl may name.')
param callbackAllowedHosts string = '*.logic.azure.com'

@description('PROVISIONING_SCHEDULES as JSON (an array of schedules). Wins over provisioningSchedulesBase64.')
param provisioningSchedules string = ''

@description('PROVISIONING_SCHEDULES as base64 of the JSON, so the JSON survives azd\'s text substitution into main.parameters.json.')
param provisioningSchedulesBase64 string = ''

@description('Grant the app GroupMember.Read.All on Microsoft Graph: needed when a schedule has a "group" (its members are read at each run).')
param schedulesUseGroups bool = false

@description('Grant the app User.ReadBasic.All on Microsoft Graph: needed when subjects may be given by userPrincipalName instead of objectId.')
param resolveUserPrincipalNames bool = false

@description('Outcome events to Event Grid besides the provisioning-outcomes queue: none, new (a topic in this resource group), or existing (eventGridTopicName in eventGridTopicResourceGroup). The app\'s identity gets EventGrid Data Sender on it.')
@allowed([
  'none'
  'new'
  'existing'
])
param eventGridTopic string = 'none'

@description('Name of the existing Event Grid topic (eventGridTopic existing).')
param eventGridTopicName string = ''

@description('Resource group of the existing topic, in this subscription; empty: the app\'s resource group.')
param eventGridTopicResourceGroup string = ''

// --- Alerts (issue 12) -------------------------------------------------------------------------------------------

@description('Email notified by the alert rules (failed Graph calls, poison messages, throttling). Empty: the alerts fire in Azure Monitor without notifying anyone.')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-api-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var targetsFromBase64 = empty(provisioningTargetsBase64) ? '' : base64ToString(provisioningTargetsBase64)
var targetsJson = !empty(provisioningTargets) ? provisioningTargets : targetsFromBase64
var schedulesFromBase64 = empty(provisioningSchedulesBase64) ? '' : base64ToString(provisioningSchedulesBase64)
var schedulesGiven = !empty(provisioningSchedules) ? provisioningSchedules : schedulesFromBase64
var schedulesJson = empty(schedulesGiven) ? '[]' : schedulesGiven

// Entra: the template's own registration unless an existing one is named.
var createEntraApp = (authMode == 'entra') && empty(existingAuthClientId)
var authClientIdInUse = createEntraApp ? entraApp.outputs.clientId : existingAuthClientId
var authApplicationIdUriInUse = createEntraApp ? entraApp.outputs.applicationIdUri : existingAuthApplicationIdUri
var submitterPrincipalIds = empty(authSubmitterPrincipalIds) ? [] : split(replace(authSubmitterPrincipalIds, ' ', ''), ',')
var operatorPrincipalIds = empty(authOperatorPrincipalIds) ? [] : split(replace(authOperatorPrincipalIds, ' ', ''), ',')

var newEventGridTopicName = 'evgt-${resourceToken}'

// Names the app uses (see docs/architecture.md; tests/infra/test_settings_contract.py compares them with shared/).
var ledgerTableName = 'ProvisioningRequests'
var provisioningLogsContainerName = 'provisioning-logs'
var storageQueueNames = [
  'provisioning-requests'
  'provisioning-requests-poison'
  'provisioning-work'
  'provisioning-work-poison'
  'provisioning-outcomes'
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'core/security/user-assigned-identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'core/storage/storage-account.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    containers: [
      deploymentContainerName
      provisioningLogsContainerName
    ]
    queues: storageQueueNames
    tables: [
      ledgerTableName
    ]
  }
}

module alerts 'core/monitor/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    managedIdentityPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
  }
}

module graphGrant 'app/graph-permission.bicep' = if (grantGraphPermission) {
  name: 'graph-permission'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    permission: graphPermission
    readGroupMembers: schedulesUseGroups
    readUserBasics: resolveUserPrincipalNames
  }
}

module entraApp 'app/entra-app.bicep' = if (createEntraApp) {
  name: 'entra-app'
  scope: rg
  params: {
    uniqueName: 'provisioning-api-${resourceToken}'
    displayName: 'Provisioning on demand API (${environmentName})'
    submitterPrincipalIds: submitterPrincipalIds
    operatorPrincipalIds: operatorPrincipalIds
  }
}

module eventGridTopicNew 'core/events/eventgrid-topic.bicep' = if (eventGridTopic == 'new') {
  name: 'eventgrid-topic'
  scope: rg
  params: {
    name: newEventGridTopicName
    location: location
    tags: tags
  }
}

module eventGridSender 'app/eventgrid-sender.bicep' = if (eventGridTopic != 'none') {
  name: 'eventgrid-sender'
  scope: resourceGroup(((eventGridTopic == 'existing') && !empty(eventGridTopicResourceGroup)) ? eventGridTopicResourceGroup : rg.name)
  params: {
    topicName: (eventGridTopic == 'new') ? newEventGridTopicName : eventGridTopicName
    principalId: identity.outputs.principalId
  }
  dependsOn: [
    eventGridTopicNew
  ]
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    publicBaseUrl: publicBaseUrl
    provisioningTargets: targetsJson
    graphCloud: graphCloud
    graphRateLimit: graphRateLimit
    graphRateScope: graphRateScope
    allowUnlistedTargets: allowUnlistedTargets
    ledgerRetentionDays: ledgerRetentionDays
    authMode: authMode
    authClientId: authClientIdInUse
    authApplicationIdUri: authApplicationIdUriInUse
    callbackAllowedHosts: callbackAllowedHosts
    eventGridTopicEndpoint: (eventGridTopic == 'none') ? '' : eventGridSender.outputs.endpoint
    provisioningSchedules: schedulesJson
  }
  // The host starts with identity-based storage: its roles must exist first or the first start fails.
  dependsOn: [
    rbac
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${api.outputs.defaultHostName}'
output SERVICE_API_NAME string = api.outputs.name
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_LEDGER_TABLE_NAME string = ledgerTableName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output GRAPH_CLOUD string = graphCloud
output GRAPH_PERMISSION string = graphPermission
output GRAPH_PERMISSION_GRANTED_BY_BICEP bool = grantGraphPermission
output GRAPH_EXTRA_PERMISSIONS array = concat(schedulesUseGroups ? [
  'GroupMember.Read.All'
] : [], resolveUserPrincipalNames ? [
  'User.ReadBasic.All'
] : [])
output AZURE_OUTCOMES_QUEUE_NAME string = 'provisioning-outcomes'
output EVENTGRID_TOPIC_ENDPOINT string = (eventGridTopic == 'none') ? '' : eventGridSender.outputs.endpoint
output AUTH_MODE string = authMode
// What a caller asks a token for (scope '<AUTH_APPLICATION_ID_URI>/.default', or the client id), and what a Logic
// App's managed identity is given an app role on (docs/deploy.md "Grant a Logic App the role").
output AUTH_CLIENT_ID string = (authMode == 'entra') ? authClientIdInUse : ''
output AUTH_APPLICATION_ID_URI string = (authMode == 'entra') ? authApplicationIdUriInUse : ''
output AUTH_SERVICE_PRINCIPAL_ID string = createEntraApp ? entraApp.outputs.servicePrincipalId : ''
output AUTH_SUBMIT_ROLE_ID string = createEntraApp ? entraApp.outputs.submitRoleId : ''
output AUTH_OPERATE_ROLE_ID string = createEntraApp ? entraApp.outputs.operateRoleId : ''
output ALERT_RULE_NAMES array = alerts.outputs.alertRuleNames
