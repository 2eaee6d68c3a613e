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

@description('Also grant GroupMember.Read.All: PROVISIONING_SCHEDULES has schedules with a "group" (members read from Graph at each run).')
param readGroupMembers bool = false

@description('Also grant User.ReadBasic.All: subjects may name a userPrincipalName, resolved with GET /users/{upn}?$select=id.')
param readUserBasics bool = false

// App role ids on the Microsoft Graph service principal (same in every tenant): docs/graph-api-facts.md#permissions.
var appRoleIds = {
  'Synchronization.ReadWrite.All': '9b50c33d-700f-43b1-b2eb-87e89b703581'
  'Application.ReadWrite.OwnedBy': '18a4783c-866b-4cc7-a460-3d5e5662c884'
}

// Read permissions only the optional features need, each granted only when its feature is switched on, and
// each the least privileged one that does the job: GroupMember.Read.All reads memberships (not group
// properties), User.ReadBasic.All reads a user's id and names (not the full profile).
var readAppRoleIds = {
  'GroupMember.Read.All': '98830695-27a2-44f7-8c18-0c3ebc9698f6'
  'User.ReadBasic.All': '97235f07-e226-4f63-ace3-39588e11d3a1'
}

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

resource appRoleAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: appRoleIds[permission]
}

resource groupMemberReadAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (readGroupMembers) {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: readAppRoleIds['GroupMember.Read.All']
}

resource userReadBasicAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (readUserBasics) {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: readAppRoleIds['User.ReadBasic.All']
}

output appRoleAssignmentId string = appRoleAssignment.id
