// A real OpenID Connect provider (the npm package oidc-provider) for fleetmon's integration
// tests. It is a test fixture, not a product: it listens on loopback only, keeps everything in
// memory and its admin endpoints take no credentials.
//
// Configuration: JSON in the environment variable FLEETMON_OIDC_FIXTURE_CONFIG:
//   { "port": 0, "algorithm": "ES256" | "RS256", "audience": "…",
//     "client": { "client_id": "…", "client_secret": "…", "redirect_uris": ["…"] },
//     "users": [{ "sub", "email", "email_verified", "name", "password", "org_id" | null }] }
// When listening it prints one line to stdout:
//   READY {"issuer":"http://127.0.0.1:PORT","admin":"http://127.0.0.1:PORT/__admin","resource":"…"}
// Everything else goes to stderr.
//
// Admin endpoints (POST, no body): /__admin/rotate makes a new key the signing key and keeps the
// earlier ones published; /__admin/retire unpublishes all but the signing key. Both answer
// {"signing_kid": "…", "kids": ["…", …]}. oidc-provider fixes its keystore when a Provider is
// built, so a key change builds a new Provider behind the same server and port; sessions, codes
// and grants live in oidc-provider's in-memory adapter, which all instances in this process share.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// The RFC 8707 resource indicator of fleetmon's API; its access tokens carry `audience`.
const RESOURCE = 'urn:fleetmon:api';
// A namespaced custom claim, so the relying party's JSON pointer has to escape `/`.
const ORG_CLAIM = 'https://fleetmon.test/org';
const ALGORITHMS = new Set(['ES256', 'RS256']);

function fail(message) {
  process.stderr.write(`oidc fixture: ${message}\n`);
  process.exit(2);
}

function readConfig() {
  let config;
  try {
    config = JSON.parse(process.env.FLEETMON_OIDC_FIXTURE_CONFIG ?? '');
  } catch (error) {
    fail(`FLEETMON_OIDC_FIXTURE_CONFIG is not JSON: ${error.message}`);
  }
  const { port = 0, algorithm = 'ES256', audience, client, users } = config;
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('port must be 0..65535');
  if (!ALGORITHMS.has(algorithm)) fail(`algorithm must be one of ${[...ALGORITHMS]}`);
  if (typeof audience !== 'string' || !audience) fail('audience must be a non-empty string');
  if (typeof client?.client_id !== 'string' || typeof client?.client_secret !== 'string') {
    fail('client.client_id and client.client_secret must be strings');
  }
  if (!Array.isArray(client.redirect_uris) || client.redirect_uris.length === 0) {
    fail('client.redirect_uris must be a non-empty array');
  }
  if (!Array.isArray(users)) fail('users must be an array');
  for (const user of users) {
    for (const field of ['sub', 'email', 'name', 'password']) {
      if (typeof user[field] !== 'string' || !user[field]) fail(`users[].${field} must be a non-empty string`);
    }
  }
  return { port, algorithm, audience, client, users };
}

let keyCounter = 0;

function generateKey(algorithm) {
  const { privateKey } = algorithm === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  keyCounter += 1;
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `fixture-${keyCounter}-${crypto.randomBytes(4).toString('hex')}`,
    alg: algorithm,
    use: 'sig',
  };
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!DOCTYPE html><html><head><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`);
}

// A second form on each page lets the user cancel, as real providers do: the relying party gets
// `error=access_denied`. (Scripted clients take the first form on a page.)
function cancelForm(uid) {
  return `<form method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit" id="cancel">Cancel</button>
</form>`;
}

function loginPage(res, uid, status, message) {
  const error = message ? `<p class="error" id="error">${escapeHtml(message)}</p>` : '';
  page(res, status, 'Sign in', `<h1>Sign in</h1>${error}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label for="login">Email</label> <input type="email" id="login" name="login" required>
  <label for="password">Password</label> <input type="password" id="password" name="password" required>
  <button type="submit" id="submit">Sign in</button>
</form>
${cancelForm(uid)}`);
}

function consentPage(res, uid, clientId) {
  page(res, 200, 'Authorize', `<h1>Authorize ${escapeHtml(clientId)}</h1>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
  <input type="hidden" name="prompt" value="consent">
  <button type="submit" id="submit">Continue</button>
</form>
${cancelForm(uid)}`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const config = readConfig();
const usersBySub = new Map(config.users.map((user) => [user.sub, user]));
const usersByEmail = new Map(config.users.map((user) => [user.email.toLowerCase(), user]));

function profileClaims(user) {
  return {
    email: user.email,
    email_verified: Boolean(user.email_verified),
    name: user.name,
    ...(user.org_id ? { [ORG_CLAIM]: { id: user.org_id } } : {}),
  };
}

// One set of cookie keys for every Provider instance, so key rotation keeps browser sessions.
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clients: [{
      ...config.client,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: config.algorithm,
    }],
    responseTypes: ['code'],
    pkce: { required: () => true, methods: ['S256'] },
    cookies: { keys: cookieKeys },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    claims: {
      openid: ['sub', ORG_CLAIM],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // Put the scope's claims in the id token too, as most hosted providers do.
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...profileClaims(user) }) };
    },
    // Access tokens carry the profile too, so a bearer request alone can sync the user.
    async extraTokenClaims(_ctx, token) {
      const user = token.kind === 'AccessToken' ? usersBySub.get(token.accountId) : undefined;
      return user ? profileClaims(user) : undefined;
    },
    // A refresh token whenever the client may use one, without requiring offline_access.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, resource) {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'fleetmon:api',
            audience: config.audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 600,
            jwt: { sign: { alg: config.algorithm } },
          };
        },
      },
    },
    clientBasedCORS: () => false,
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Grant: 3600,
      RefreshToken: 86400,
      Session: 3600,
    },
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  provider.on('server_error', (_ctx, error) => process.stderr.write(`oidc fixture: server_error: ${error.stack}\n`));
  return { provider, handle: provider.callback() };
}

async function interaction(current, req, res, uid, action) {
  const { provider } = current;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, 'Error', '<p>interaction mismatch</p>');
  const { prompt, params, session, grantId } = details;

  if (req.method === 'GET' && action === undefined) {
    if (prompt.name === 'login') return loginPage(res, uid, 200);
    return consentPage(res, uid, params.client_id);
  }
  if (req.method === 'POST' && action === 'abort') {
    await readForm(req);
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = await readForm(req);
    const user = usersByEmail.get((form.get('login') ?? '').toLowerCase());
    const password = Buffer.from(form.get('password') ?? '');
    const ok = user
      && password.length === Buffer.byteLength(user.password)
      && crypto.timingSafeEqual(password, Buffer.from(user.password));
    if (!ok) return loginPage(res, uid, 401, 'Invalid login or password.');
    return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, {
      mergeWithLastSubmission: false,
    });
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    await readForm(req);
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
      mergeWithLastSubmission: true,
    });
  }
  return page(res, 400, 'Error', `<p>unexpected ${escapeHtml(req.method)} for the ${escapeHtml(prompt.name)} prompt</p>`);
}

function keysReply(res, keys) {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ signing_kid: keys[0].kid, kids: keys.map((key) => key.kid) }));
}

// The first key of an algorithm is the one oidc-provider signs with.
let keys = [generateKey(config.algorithm)];
let current;

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, 'http://fixture').pathname;
  try {
    if (path === '/__admin/rotate' || path === '/__admin/retire') {
      if (req.method !== 'POST') return page(res, 405, 'Error', '<p>POST only</p>');
      keys = path === '/__admin/rotate' ? [generateKey(config.algorithm), ...keys] : [keys[0]];
      current = buildProvider(current.provider.issuer, keys);
      return keysReply(res, keys);
    }
    // Browsers ask for one; a 404 would be a console error in the dashboard's browser tests.
    if (path === '/favicon.ico') {
      res.statusCode = 204;
      return res.end();
    }
    const match = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/.exec(path);
    if (match) return await interaction(current, req, res, match[1], match[2]);
    return current.handle(req, res);
  } catch (error) {
    process.stderr.write(`oidc fixture: ${req.method} ${path}: ${error.stack}\n`);
    if (!res.headersSent) page(res, 400, 'Error', `<p>${escapeHtml(error.message)}</p>`);
    else res.end();
  }
});

server.listen(config.port, '127.0.0.1', () => {
  const origin = `http://127.0.0.1:${server.address().port}`;
  current = buildProvider(origin, keys);
  process.stdout.write(`READY ${JSON.stringify({ issuer: origin, admin: `${origin}/__admin`, resource: RESOURCE })}\n`);
});
