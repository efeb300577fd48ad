// The guide's Next.js app as far as the database goes: it loads its Mongoose model, starts
// (awaiting autoIndex, as an app that must know its indexes are built does), and reads back
// every user document through the model, validating each one.
// Usage: node app.mjs MODEL_FILE URL DBNAME  -> one JSON line: indexes, users, invalid
import mongoose from "mongoose";

const [modelFile, url, dbName] = process.argv.slice(2);
const { default: User } = await import(modelFile);
await mongoose.connect(url, { dbName });
try {
  await User.init(); // rejects when an index of the same name has other options
  const invalid = [];
  const users = await User.find().lean(false);
  for (const user of users) {
    const error = user.validateSync();
    if (error) invalid.push({ _id: String(user._id), error: error.message });
  }
  const indexes = (await User.collection.indexes()).map((i) => i.name);
  console.log(JSON.stringify({ indexes, users: users.length, invalid }));
} finally {
  await mongoose.disconnect();
}
