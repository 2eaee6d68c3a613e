// The app's only identity: storage, Application Insights and Microsoft Graph all accept it, so there is no secret
// to store or rotate. User-assigned (not system-assigned) so it exists before the function app and its roles and
// Graph grant are in place when the app first starts.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
