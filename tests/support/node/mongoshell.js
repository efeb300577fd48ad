// Runs MongoDB-shell lines as `clerksync doctor` prints them (db.users.dropIndex("x"),
// db.users.deleteOne({ _id: ObjectId("...") }), ...) with the Node driver mongoose ships:
// the tests apply doctor's fixes exactly as printed, without a mongosh binary.
// Usage: node mongoshell.js URL DBNAME < lines (one statement a line)
const { MongoClient, ObjectId: Id } = require("mongoose").mongo;

// as in mongosh, ObjectId("…") without `new`
const ObjectId = (hex) => new Id(hex);

async function main() {
  const [url, name] = process.argv.slice(2);
  const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.trim());
  const client = new MongoClient(url);
  await client.connect();
  const database = client.db(name);
  const db = new Proxy({}, { get: (_, collection) => database.collection(String(collection)) });
  try {
    for (const line of lines) {
      const run = new Function("db", "ObjectId", `return (async () => (${line}))();`);
      const result = await run(db, ObjectId);
      console.log(JSON.stringify({ line, result }));
    }
  } finally {
    await client.close();
  }
}

main().catch((err) => {
  console.error(err && err.message ? err.message : String(err));
  process.exit(1);
});
