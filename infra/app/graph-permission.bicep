// Grants the app's managed identity its Microsoft Graph application permission (an app role assignment on the
// Microsoft Graph service principal). There is no portal screen for this; Azure RBAC cannot do it.
// The deploying identity needs the Graph permissions AppRoleAssignment.ReadWrite.All and Application.Read.All
// (e.g. Privileged Role Administrator). Public cloud only: elsewhere run scripts/grant-graph-permission.
extension microsoftGraphV1

@description('Object id of the managed identity\'s service principal (the UAMI\'s principalId).')
param principalId string

@description('Graph application permission to grant.')
@allowed([
  'Synchronization.ReadWrite.All'
  'Application.ReadWrite.OwnedBy'
])
param permission string

// App role ids on the Microsoft Graph service principal (same in every tenant): docs/graph-api-facts.md#permissions.
var appRoleIds = {
  'Synchronization.ReadWrite.All': '9b50c33d-700f-43b1-b2eb-87e89b703581'
  'Application.ReadWrite.OwnedBy': '18a4783c-866b-4cc7-a460-3d5e5662c884'
}

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource appRoleAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: appRoleIds[permission]
}

output appRoleAssignmentId string = appRoleAssignment.id
