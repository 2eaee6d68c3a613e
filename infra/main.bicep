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

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-api-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var targetsFromBase64 = empty(provisioningTargetsBase64) ? '' : base64ToString(provisioningTargetsBase64)
var targetsJson = !empty(provisioningTargets) ? provisioningTargets : targetsFromBase64

// Names the app uses (see docs/architecture.md; tests/infra/test_settings_contract.py compares them with shared/).
var ledgerTableName = 'ProvisioningRequests'
var provisioningLogsContainerName = 'provisioning-logs'
var storageQueueNames = [
  'provisioning-requests'
  'provisioning-requests-poison'
  'provisioning-work'
  'provisioning-work-poison'
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
  }
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
