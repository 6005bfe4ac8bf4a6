// The image the media gateway container app runs right now, read from the app itself, so a provision after a deploy
// keeps the gateway on the image azd deployed instead of putting the placeholder back.
//
// Derived, not remembered: `exists` comes from SERVICE_GATEWAY_RESOURCE_EXISTS, which azd sets before every
// provision by looking for the container app (azd's containerapp service target, its preprovision check). After
// `azd down` the app is gone, so `exists` is false and the first provision starts from the placeholder again;
// nothing in the azd environment names an image in a registry that no longer exists. In its own module because a
// template cannot read the live properties of a resource it also deploys.

@description('Whether the gateway container app exists (SERVICE_GATEWAY_RESOURCE_EXISTS).')
param exists bool

@description('Name of the gateway container app.')
param name string

resource existingApp 'Microsoft.App/containerApps@2024-03-01' existing = if (exists) {
  name: name
}

// ARM evaluates only the branch the condition picks, so a missing app is never read.
output image string = exists ? existingApp.properties.template.containers[0].image : ''
