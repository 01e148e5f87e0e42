import t from 'tap'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { pgClient, startStack } from '../helpers/stack.js'

t.test('a user logs in with email and password, gets a short-lived token of the same kind, and reaches a granted resource', async (t) => {
  const stack = await startStack(t)
  const created = await stack.run(['admin', 'users', 'create', 'ada@example.com', '--password-stdin'], {})
  t.equal(created.code, 2, 'an empty password on stdin is refused')
  t.equal((await stack.run(['admin', 'users', 'create', 'ada@example.com'])).code, 0)
  const set = await stack.run(['admin', 'users', 'set-password', 'ada@example.com', '--password-stdin'], {}, 'correct horse battery\n')
  t.equal(set.code, 0, set.stderr)
  await stack.admin('roles', 'assign', 'ada@example.com', 'etl')
  const policy = readFileSync(join(stack.dir, 'policy.yaml'), 'utf8')
  t.notMatch(policy, /passwordHash|scrypt/, 'the policy never holds a password hash')
  const credentials = readFileSync(join(stack.dir, 'credentials.yaml'), 'utf8')
  t.match(credentials, /passwordHash: scrypt\$/)
  t.notMatch(credentials, /correct horse battery/, 'the password is stored only as a scrypt hash')
  t.equal(statSync(join(stack.dir, 'credentials.yaml')).mode & 0o777, 0o600, 'in a 0600 file')

  const wrong = await stack.run(['login', '--email', 'ada@example.com', '--password-stdin'], {}, 'wrong password\n')
  t.equal(wrong.code, 1)
  t.match(wrong.stderr, /ERR_LOGIN_FAILED/)
  t.equal(wrong.stdout, '')
  const unknown = await stack.run(['login', '--email', 'nobody@example.com', '--password-stdin'], {}, 'correct horse battery\n')
  t.match(unknown.stderr, /ERR_LOGIN_FAILED/, 'an unknown email gets the same answer')

  const login = await stack.run(['login', '--email', 'ada@example.com', '--password-stdin'], {}, 'correct horse battery\n')
  t.equal(login.code, 0, login.stderr)
  const token = login.stdout.trim()
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number; iat: number; kw: string }
  t.equal(claims.kw, 'login')
  t.equal(claims.exp - claims.iat, 3600, 'short-lived: tokens.loginTtl, 1 h by default')

  await stack.sidecar(token)
  const client = await pgClient(t, stack.overridePort)
  t.same((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  t.match(await stack.gateway.waitLog((l) => l.event === 'login'), { account_name: 'ada@example.com' })
  t.match(
    stack.gateway.lines.filter((l) => l.event === 'login_failed'),
    [{ code: 'ERR_LOGIN_FAILED', account_name: 'ada@example.com', client: /^127\.0\.0\.1:/ }, { account_name: 'nobody@example.com' }],
  )
  t.notOk(JSON.stringify(stack.gateway.lines).includes('correct horse'), 'no password in the logs')
})
