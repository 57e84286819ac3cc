// The one access policy of both APIs. v1 and v2 differ in how credentials arrive (Basic,
// `Token signature=…`, `Bearer`) and how a refusal is written (a v1 JSON error, a Bearer
// challenge); they are turned into a Credential at the edge (auth/v1-access.ts,
// auth/v2-access.ts), and every decision (pull, push, delete, catalog, search, token minting)
// is taken here, from the same inputs:
//   private namespaces:   pull for users (or anyone with private.anonymousPull); push and
//                         delete for users
//   mirrored repositories: pull for users (or anyone with auth.anonymousPull); nothing else,
//                         for anyone: they are read-only
//   our tokens:           exactly what they grant (minted from these rules), while valid
//   foreign tokens:       (v1 only: an upstream index's token in old-Docker --registry-mirror
//                         mode) worth nothing here; they are passed to the upstream, which
//                         judges them, and never open cached content on their own
//   listings:             (catalog, search: `list`) a repository is listed to whoever may
//                         pull it; a token lists what its subject may pull (catalog tokens
//                         carry no repository grants) and what it grants
export type Action = 'pull' | 'push' | 'delete' | 'list';

/** Actions that only read: the only ones a mirrored repository allows. */
const READ_ACTIONS: ReadonlySet<Action> = new Set(['pull', 'list']);

export interface UserVerifier {
  /** True when the user exists and the password is right. */
  /** `clientAddress`: where the request came from, for the failed-login limits. */
  verify(username: string, password: string, clientAddress?: string): Promise<boolean>;
  /** False for accounts that may only pull (self-registered, auth.signupAccess: pull). */
  mayPush?(username: string): boolean;
}

/** Whether a user may push and delete in private namespaces (all may, but pull-only sign-ups). */
export function userMayPush(users: UserVerifier | undefined, username: string): boolean {
  return users?.mayPush?.(username) ?? true;
}

/** The user named by `Basic` credentials (the base64 part), when they are valid. Both APIs use it. */
export async function verifyBasic(users: UserVerifier | undefined, credentials: string, clientAddress: string | undefined): Promise<string | undefined> {
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0 || !users) return undefined;
  const name = decoded.slice(0, colon);
  return (await users.verify(name, decoded.slice(colon + 1), clientAddress)) ? name : undefined;
}

/** First path component in `private.namespaces`: stored here, never mirrored. */
export class NamespacePolicy {
  private readonly namespaceSet: ReadonlySet<string>;

  constructor(namespaces: readonly string[]) {
    this.namespaceSet = new Set(namespaces);
  }

  isPrivate(repository: string): boolean {
    // Asked several times per request: a slice, not an array of every component.
    const slash = repository.indexOf('/');
    return this.namespaceSet.has(slash === -1 ? repository : repository.slice(0, slash));
  }

  get hasPrivateNamespaces(): boolean {
    return this.namespaceSet.size > 0;
  }

  get namespaces(): string[] {
    return [...this.namespaceSet];
  }
}

export interface Grant {
  repository: string;
  actions: readonly Action[];
}

/** Who is asking, whatever the API. */
export type Credential =
  | { kind: 'anonymous' }
  | { kind: 'user'; name: string }
  /** A token we signed: its subject ('' for anonymous tokens) and what it grants. */
  | { kind: 'token'; subject: string; grants: readonly Grant[] }
  /** A token we did not sign (v1: an upstream's, or forged or expired). */
  | { kind: 'foreign' };

export type Decision =
  | { allowed: true }
  | {
      allowed: false;
      /**
       * login: no credentials, log in; insufficient_scope: a valid token that lacks the action
       * (a new token may have it); invalid_token: a token we did not sign or that expired;
       * forbidden: these credentials will never get it (a push into a mirrored repository).
       */
      reason: 'login' | 'insufficient_scope' | 'invalid_token' | 'forbidden';
      message: string;
    };

export interface PolicySettings {
  /** auth.anonymousPull: pulls of mirrored content without credentials. */
  anonymousPull: boolean;
  /** private.anonymousPull: pulls of private repositories without credentials. */
  privateAnonymousPull: boolean;
}

export type Refusal = Extract<Decision, { allowed: false }>;

const ALLOWED: Decision = { allowed: true };

export class AccessPolicy {
  constructor(
    readonly namespaces: NamespacePolicy,
    private readonly settings: PolicySettings,
    /** Who may push: every user, but self-registered ones while auth.signupAccess is "pull". */
    private readonly users?: UserVerifier,
  ) {}

  isPrivate(repository: string): boolean {
    return this.namespaces.isPrivate(repository);
  }

  /** What a user (undefined: anonymous) may do on a repository: the rules, and what tokens are minted from. */
  allowedActions(user: string | undefined, repository: string): Action[] {
    if (this.isPrivate(repository)) {
      if (user) return userMayPush(this.users, user) ? ['pull', 'list', 'push', 'delete'] : ['pull', 'list'];
      return this.settings.privateAnonymousPull ? ['pull', 'list'] : [];
    }
    return user || this.settings.anonymousPull ? ['pull', 'list'] : [];
  }

  /** The subset of `wanted` a token for this user may carry. */
  grantable(user: string | undefined, repository: string, wanted: readonly Action[]): Action[] {
    const allowed = this.allowedActions(user, repository);
    return wanted.filter((action) => allowed.includes(action));
  }

  decide(credential: Credential, repository: string, actions: readonly Action[]): Decision {
    const isPrivate = this.isPrivate(repository);
    if (!isPrivate && actions.some((a) => !READ_ACTIONS.has(a))) {
      return this.refuse('forbidden', `${repository} is a mirrored repository and read-only: push only into private namespaces (${this.namespacesText()})`);
    }
    const wanted = actions.join(',');
    switch (credential.kind) {
      case 'user': {
        const allowed = this.allowedActions(credential.name, repository);
        return actions.every((a) => allowed.includes(a)) ? ALLOWED : this.refuse('forbidden', this.notForUser(credential.name, wanted, repository));
      }
      case 'token': {
        const granted = credential.grants.filter((g) => g.repository === repository).flatMap((g) => (g.actions.includes('pull') ? [...g.actions, 'list' as const] : g.actions));
        if (actions.every((a) => granted.includes(a))) return ALLOWED;
        const subject = credential.subject === '' ? undefined : credential.subject;
        const byRules = this.allowedActions(subject, repository);
        if (actions.every((a) => a === 'list' && byRules.includes(a))) return ALLOWED;
        // A signed-in user's token asking for what the rules never give them: no token would help.
        if (subject !== undefined && !actions.every((a) => byRules.includes(a))) return this.refuse('forbidden', this.notForUser(subject, wanted, repository));
        return this.refuse('insufficient_scope', `the token does not grant ${wanted} on ${repository}`);
      }
      case 'foreign': {
        // Worth what no credentials are worth: an upstream's token is the upstream's to judge.
        const allowed = this.allowedActions(undefined, repository);
        return actions.every((a) => allowed.includes(a)) ? ALLOWED : this.refuse('invalid_token', 'invalid or expired token');
      }
      case 'anonymous': {
        const allowed = this.allowedActions(undefined, repository);
        if (actions.every((a) => allowed.includes(a))) return ALLOWED;
        return this.refuse('login', actions.every((a) => READ_ACTIONS.has(a)) ? 'authentication required' : 'pushing needs a login (docker login)');
      }
    }
  }

  /**
   * A listing (catalog, search): the names this caller may see, each decided as a `list` of
   * it, and the first refusal other credentials could overturn (a login, a new token), so an
   * empty answer can tell the caller to log in.
   */
  listing(credential: Credential, names: Iterable<string>): { visible: string[]; refusal: Refusal | undefined } {
    const visible: string[] = [];
    let refusal: Refusal | undefined;
    for (const name of names) {
      const decision = this.decide(credential, name, ['list']);
      if (decision.allowed) visible.push(name);
      else if (decision.reason !== 'forbidden') refusal ??= decision;
    }
    return { visible, refusal };
  }

  /** Whether this caller may see private images at all (v1 image routes, which name no repository). */
  readsPrivate(credential: Credential): boolean {
    switch (credential.kind) {
      case 'user':
        return true;
      case 'token':
        return credential.subject !== '' || credential.grants.some((g) => this.isPrivate(g.repository) && g.actions.includes('pull'));
      case 'anonymous':
        return this.settings.privateAnonymousPull;
      case 'foreign':
        return false;
    }
  }

  /** Whether this caller may read mirrored content at all (v1 image routes, upstream search results). */
  readsMirrored(credential: Credential): boolean {
    switch (credential.kind) {
      case 'user':
        return true;
      case 'token':
        return credential.subject !== '' || this.settings.anonymousPull || credential.grants.some((g) => !this.isPrivate(g.repository) && g.actions.includes('pull'));
      case 'anonymous':
      case 'foreign':
        return this.settings.anonymousPull;
    }
  }

  /** Whether a user may push at all (v1 image writes name no repository). */
  mayPush(user: string): boolean {
    return userMayPush(this.users, user);
  }

  private notForUser(user: string, wanted: string, repository: string): string {
    if (this.isPrivate(repository) && !this.mayPush(user)) return `account ${user} was self-registered and may only pull until an operator grants more`;
    return `${wanted} on ${repository} is not allowed for ${user}`;
  }

  private refuse(reason: Refusal['reason'], message: string): Decision {
    return { allowed: false, reason, message };
  }

  private namespacesText(): string {
    return this.namespaces.hasPrivateNamespaces ? `private.namespaces: ${this.namespaces.namespaces.join(', ')}` : 'none are configured in private.namespaces';
  }
}
