// The guide's Mongoose model, with index declarations that work beside clerksync.
// Mongoose's autoIndex builds these at every start: each one is the index clerksync
// expects, so the app starts whether it or clerksync made the index first.
import mongoose from "mongoose";

const UserSchema = new mongoose.Schema(
  {
    clerkId: { type: String, required: true },
    email: { type: String }, // null for a phone-only Clerk user
    firstName: { type: String },
    lastName: { type: String },
    username: { type: String }, // null unless usernames are on in Clerk
    profilePicture: { type: String },
    isAdmin: { type: Boolean, default: false },
  },
  { timestamps: true },
);

// clerksync's unique Clerk-id index, as clerksync makes it: Clerk user ids only, so the
// users your app creates itself (no Clerk id yet) never block it.
UserSchema.index(
  { clerkId: 1 },
  { unique: true, partialFilterExpression: { clerkId: { $gte: "user_", $lt: "user`" } } },
);
// Unique where present: any number of Clerk users without an email or a username.
UserSchema.index({ email: 1 }, { unique: true, partialFilterExpression: { email: { $type: "string" } } });
UserSchema.index({ username: 1 }, { unique: true, partialFilterExpression: { username: { $type: "string" } } });

export default mongoose.models.User || mongoose.model("User", UserSchema);
