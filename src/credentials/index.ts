/**
 * The credentials file: user password hashes (and the admin UI's admin flag)
 * kept out of the policy, in a file only the gateway and `keyway admin` read,
 * refused when others may read it.
 */
export {
  checkCredentialsMode,
  parseCredentials,
  formatCredentials,
  readCredentials,
  processGroups,
  type Credentials,
  type UserCredentials,
  type ProcessGroups,
} from './file.js'
export { CredentialStore, type CredentialStoreOptions } from './store.js'
