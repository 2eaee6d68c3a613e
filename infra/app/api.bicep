// The Flex Consumption plan and the function app. Every app setting the app reads is set here (the contract in
// shared/settings.py; tests/infra/test_settings_contract.py fails if one goes missing or an unknown one appears).
// Settings deprecated on Flex (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// WEBSITE_CONTENT*, SCM_DO_BUILD_DURING_DEPLOYMENT, ...) are deliberately absent: functionAppConfig replaces them.
param name string
param planName string
param location string
param tags object = {}

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID, AzureWebJobsStorage__clientId, App Insights auth).')
param identityClientId string

@description('Blob endpoint of the storage account, ending in a slash.')
param blobEndpoint string

@description('Queue endpoint of the storage account.')
param queueEndpoint string

@description('Table endpoint of the storage account.')
param tableEndpoint string

@description('Blob container the Flex deployment package is uploaded to.')
param deploymentContainerName string

@description('Connection string of Application Insights (holds no secret: local auth is disabled).')
param applicationInsightsConnectionString string

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('PROVISIONING_TARGETS: JSON object of named targets; empty for none.')
param provisioningTargets string

@allowed([
  'Global'
  'USGov'
  'USGovDoD'
  'China'
])
param graphCloud string

param graphRateLimit string

@allowed([
  'tenant'
  'job'
])
param graphRateScope string

param allowUnlistedTargets bool

@minValue(1)
param ledgerRetentionDays int

@description('HTTP requests one instance takes at once (Flex Consumption runs Python at 1 unless told).')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

@description('PUBLIC_BASE_URL: where callers reach the app (a custom domain, Front Door, API Management). Empty: the app\'s own https default host name.')
param publicBaseUrl string = ''

// The default host name is <name>.<the cloud's App Service domain>. The app's defaultHostName property cannot
// be read inside its own definition (a cycle), so it is computed the same way here.
var appServiceDomains = {
  AzureCloud: 'azurewebsites.net'
  AzureUSGovernment: 'azurewebsites.us'
  AzureChinaCloud: 'chinacloudsites.cn'
}
var appServiceDomain = contains(appServiceDomains, environment().name) ? appServiceDomains[environment().name] : 'azurewebsites.net'
var publicBase = empty(publicBaseUrl) ? 'https://${name}.${appServiceDomain}' : publicBaseUrl

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption exists only in regions with availability zones and needs ZRS storage; off by default so the template deploys in every Flex region. Set properties.zoneRedundant where available.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Callers (HR systems, Logic Apps) reach the API over the internet; every route but /api/health needs a function key, and HTTPS only. Put it behind a private endpoint or API Management if the callers are private.
  // checkov:skip=CKV_AZURE_17:Callers authenticate with function keys (Logic Apps HTTP action with ?code=); requiring client certificates would lock them out.
  // checkov:skip=CKV_AZURE_212:Minimum instance counts are an App Service plan notion; Flex Consumption scales from zero per function and has no fixed instances to fail over between (always-ready instances cost money and are optional).
  // checkov:skip=CKV_AZURE_213:App Service health check (healthCheckPath) takes unhealthy instances of a fixed pool out of rotation; Flex Consumption has no such pool and is documented by Microsoft's reliability guidance as not supporting it. Monitors use the app's anonymous GET /api/health.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
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
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage, identity-based: no connection string exists (shared keys are off on the account).
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: blobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: queueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: tableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // The app's own SDK clients (storage, Graph) pick the user-assigned identity by this client id.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        // Telemetry: Entra-only ingestion with the UAMI; the Python worker configures azure-monitor-opentelemetry.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        // The app's settings (docs/architecture.md; README "Settings"). GRAPH_BASE_URL is not set: GRAPH_CLOUD picks the host.
        {
          name: 'GRAPH_CLOUD'
          value: graphCloud
        }
        {
          name: 'PROVISIONING_TARGETS'
          value: provisioningTargets
        }
        {
          name: 'ALLOW_UNLISTED_TARGETS'
          value: allowUnlistedTargets ? 'true' : 'false'
        }
        {
          name: 'GRAPH_RATE_LIMIT'
          value: graphRateLimit
        }
        {
          name: 'GRAPH_RATE_SCOPE'
          value: graphRateScope
        }
        {
          name: 'LEDGER_RETENTION_DAYS'
          value: string(ledgerRetentionDays)
        }
        // Location and every absolute link are built on this, never on a caller's Host header.
        {
          name: 'PUBLIC_BASE_URL'
          value: publicBase
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Flex runs Python HTTP functions one request per instance by default, which suits CPU-bound sync
        // code. This app's HTTP functions are async and spend their time waiting on Table/Queue storage, and
        // Prefer: wait holds a request for up to 60 s: at 1, one waiting caller would block every other
        // request on its instance. The app lets at most half of these slots wait (http_api.MAX_CONCURRENT_WAITS).
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output planName string = plan.name
