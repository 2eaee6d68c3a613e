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

@description('AUTH_MODE: entra (App Service Authentication validates an Entra ID token on every route but /api/health; the app enforces the app roles) or keys (function keys only, the opt-in fallback).')
@allowed([
  'entra'
  'keys'
])
param authMode string = 'entra'

@description('Client id of the API\'s Entra app registration (entra mode); tokens must be issued for it.')
param authClientId string = ''

@description('Application ID URI of that registration (also accepted as token audience); empty: the client id only.')
param authApplicationIdUri string = ''

@description('CALLBACK_ALLOWED_HOSTS: hosts a request\'s callbackUrl may name (format: README "Settings").')
param callbackAllowedHosts string = '*.logic.azure.com'

@description('EVENTGRID_TOPIC_ENDPOINT: Event Grid topic the outcome events also go to; empty: the provisioning-outcomes queue only.')
param eventGridTopicEndpoint string = ''

@description('PROVISIONING_SCHEDULES: JSON array of recurring schedules.')
param provisioningSchedules string = '[]'

// The default host name is <name>.<the cloud's App Service domain>. The app's defaultHostName property cannot
// be read inside its own definition (a cycle), so it is computed the same way here.
var appServiceDomains = {
  AzureCloud: 'azurewebsites.net'
  AzureUSGovernment: 'azurewebsites.us'
  AzureChinaCloud: 'chinacloudsites.cn'
}
var appServiceDomain = contains(appServiceDomains, environment().name) ? appServiceDomains[environment().name] : 'azurewebsites.net'
var publicBase = empty(publicBaseUrl) ? 'https://${name}.${appServiceDomain}' : publicBaseUrl

// Tokens are validated against the tenant's v2.0 issuer (the registration created by app/entra-app.bicep asks
// for v2 tokens); the login host follows the cloud (login.microsoftonline.us, .chinacloudapi.cn, ...).
var openIdIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
// v2 tokens carry the client id as audience, v1 tokens the Application ID URI: both are accepted. keys mode: none.
var allowedAudiences = empty(authClientId) ? [] : (empty(authApplicationIdUri) ? [
  authClientId
] : [
  authClientId
  authApplicationIdUri
])

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
  // checkov:skip=CKV_AZURE_222:Callers (HR systems, Logic Apps) reach the API over the internet; every route but /api/health needs an Entra ID token (authMode entra, authsettingsV2 below) or a function key (authMode keys), and HTTPS only. Put it behind a private endpoint or API Management if the callers are private.
  // checkov:skip=CKV_AZURE_17:Callers authenticate with Entra ID tokens (Logic Apps with their managed identity) or function keys (?code=); requiring client certificates would lock them out.
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
        // entra: App Service Authentication (authSettings below) has validated the caller, and the app reads its
        // roles from X-MS-CLIENT-PRINCIPAL; keys: no platform authentication, function keys only.
        {
          name: 'AUTH_MODE'
          value: authMode
        }
        // Callbacks (callbackUrl) may only go to these hosts; outcome events go to the provisioning-outcomes queue
        // and, when set, to this Event Grid topic (empty: none).
        {
          name: 'CALLBACK_ALLOWED_HOSTS'
          value: callbackAllowedHosts
        }
        {
          name: 'EVENTGRID_TOPIC_ENDPOINT'
          value: eventGridTopicEndpoint
        }
        {
          name: 'PROVISIONING_SCHEDULES'
          value: provisioningSchedules
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

// App Service Authentication (Easy Auth) in front of every route: an API, so no login page and no token store;
// a request without a valid token for the registration gets 401 before the app runs. /api/health stays anonymous
// (monitors, azd's check). Deployed in both modes so switching to keys really switches it off (a resource left
// out of an incremental deployment would keep its old configuration): with authMode keys the platform is
// disabled and function keys are the only gate.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov's Microsoft.Web/sites/config checks below read the 'web' config (siteConfig); this is the
  // 'authsettingsV2' config, which has none of those properties. Its own check, CKV_AZURE_56 (authsettingsV2
  // platform enabled), runs and passes.
  // checkov:skip=CKV_AZURE_13:Checks the retired authsettings (V1) shape, properties.enabled; this resource is authsettingsV2, whose platform.enabled is checked by CKV_AZURE_56 (passes).
  // checkov:skip=CKV_AZURE_63:httpLoggingEnabled is a siteConfig property of the 'web' config, not of authsettingsV2; Flex Consumption logs go to Application Insights instead.
  // checkov:skip=CKV_AZURE_65:detailedErrorLoggingEnabled is a siteConfig property of the 'web' config, not of authsettingsV2; errors are in Application Insights.
  // checkov:skip=CKV_AZURE_66:requestTracingEnabled is a siteConfig property of the 'web' config, not of authsettingsV2; requests are traced by Application Insights.
  // checkov:skip=CKV_AZURE_80:netFrameworkVersion is a siteConfig property of the 'web' config; this is authsettingsV2 of a Python app.
  // checkov:skip=CKV_AZURE_88:azureStorageAccounts (Azure Files mounts) belong to the 'web' config, not authsettingsV2; the app keeps no files, its state is in Table and Queue storage.
  // checkov:skip=CKV_AZURE_222:publicNetworkAccess belongs to the site, where the same skip is explained; this authsettingsV2 config is what protects the public endpoint.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: authMode == 'entra'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: authMode == 'entra'
        registration: {
          openIdIssuer: openIdIssuer
          clientId: authClientId
        }
        validation: {
          allowedAudiences: allowedAudiences
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output planName string = plan.name
