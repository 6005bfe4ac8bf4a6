// Starts the npm Cosmos DB emulator (@vercel/cosmosdb-server) with one gap filled: transactional batches.
//
// Azure takes a batch's partition key from the request's x-ms-documentdb-partitionkey header, and the Python SDK
// sends it only there. The emulator instead reads it from each operation and fails every Replace or Upsert in a
// batch ("Failed to parse x-ms-documentdb-partitionkey headers: undefined"). Here an operation without one gets
// its item's own partition key value, which is what Azure uses (every item of a batch is in its partition).
//
// What the emulator still does differently from Azure, and the Cosmos customer store documents: a batch runs its
// operations in order and stops at the first failure, but does not roll back the ones before it.
"use strict";

const operations = require("@vercel/cosmosdb-server/lib/handler/_document-operations");

function withPartitionKey(original) {
  return (collection, input) => {
    if (input && input.partitionKey === undefined && input.resourceBody) {
      const [path] = collection.documents._partitionKeyPath;
      const value = path.split("/").filter(Boolean).reduce((node, key) => (node == null ? node : node[key]), input.resourceBody);
      input = { ...input, partitionKey: JSON.stringify([value]) };
    }
    return original(collection, input);
  };
}

operations.replaceOperation = withPartitionKey(operations.replaceOperation);
operations.upsertOperation = withPartitionKey(operations.upsertOperation);

require("@vercel/cosmosdb-server/lib/cli");
