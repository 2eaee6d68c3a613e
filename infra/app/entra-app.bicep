// The API's own Entra ID app registration (created through the Microsoft Graph Bicep extension, like the Graph
// grant in graph-permission.bicep): App Service Authentication on the function app validates tokens issued for
// it, and its two app roles say who may do what. The app reads the caller's roles from the platform's
// X-MS-CLIENT-PRINCIPAL header and enforces them per route (operator routes need Provisioning.Operate).
// Used only when main.bicep's authMode is 'entra' and no existing registration (existingAuthClientId) is given.
// The deploying identity needs Application.ReadWrite.All (e.g. Application Administrator, or Application
// Developer for its own apps) and, for the optional role assignments below, AppRoleAssignment.ReadWrite.All.
extension microsoftGraphV1

@description('Client-provided key of the registration (Graph Bicep\'s uniqueName): the same value updates the same app on every deployment.')
param uniqueName string

@description('Display name of the registration and its enterprise application.')
param displayName string

@description('Object ids (users, groups, service principals such as a Logic App\'s managed identity) granted Provisioning.Submit.')
param submitterPrincipalIds array = []

@description('Object ids granted Provisioning.Operate (the operator routes: list, retry, cancel, targets, poison, console).')
param operatorPrincipalIds array = []

// Fixed ids: an app role's id must not change once assignments point at it (docs/deploy.md lists them).
var submitRoleId = '95b471f7-b64c-4bad-a559-9e7307b81684'
var operateRoleId = '26502856-89a5-4183-a198-0d59d377744f'
var userImpersonationScopeId = '8e612b23-f1c4-429d-b415-a40c0dcbc652'

// api://{tenantId}/{string} is accepted by the default app management policy for identifier URIs (unlike
// arbitrary api://names); api://{appId} would need the app's own id inside its own definition.
var applicationIdUri = 'api://${tenant().tenantId}/${uniqueName}'

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    applicationIdUri
  ]
  api: {
    // v2 tokens carry iss https://login.microsoftonline.com/{tenant}/v2.0, the issuer App Service Authentication
    // is configured with (app/api.bicep), and aud = the client id.
    requestedAccessTokenVersion: 2
    // Lets people (the CLI through azure-identity, az account get-access-token) get a delegated token; what they
    // may do is still decided by the app roles assigned to them.
    oauth2PermissionScopes: [
      {
        id: userImpersonationScopeId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Call the provisioning API as the signed-in user'
        adminConsentDescription: 'Lets the app call the provisioning API with the signed-in user\'s app roles.'
        userConsentDisplayName: 'Call the provisioning API as you'
        userConsentDescription: 'Lets the app call the provisioning API with your app roles.'
      }
    ]
  }
  appRoles: [
    {
      id: submitRoleId
      value: 'Provisioning.Submit'
      displayName: 'Submit provisioning requests'
      description: 'Submit provisioning requests and read their status (POST /api/provision, batch, Graph-compatible route).'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
    {
      id: operateRoleId
      value: 'Provisioning.Operate'
      displayName: 'Operate the provisioning service'
      description: 'List, retry and cancel requests, read targets and poison messages, requeue them, open the console.'
      allowedMemberTypes: [
        'Application'
        'User'
      ]
      isEnabled: true
    }
  ]
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
  // Least privilege: Entra issues a token for this API only to principals holding one of its app roles, so an
  // arbitrary identity of the tenant is refused before it reaches the app.
  appRoleAssignmentRequired: true
}

resource submitAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for principalId in submitterPrincipalIds: {
    principalId: principalId
    resourceId: servicePrincipal.id
    appRoleId: submitRoleId
  }
]

resource operateAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for principalId in operatorPrincipalIds: {
    principalId: principalId
    resourceId: servicePrincipal.id
    appRoleId: operateRoleId
  }
]

output clientId string = application.appId
output applicationIdUri string = applicationIdUri
output servicePrincipalId string = servicePrincipal.id
output submitRoleId string = submitRoleId
output operateRoleId string = operateRoleId
