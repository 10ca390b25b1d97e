// Sign-in: an API key typed once, kept in an HttpOnly session cookie (session.ts).
import type { FC } from 'hono/jsx';

export const SignInPage: FC<{ assets: string; next: string; error: string | null }> = ({ assets, next, error }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>Sign in · Invoke Ledger</title>
      <link rel="icon" href="data:," />
      <link rel="stylesheet" href={`${assets}/console.css`} />
    </head>
    <body class="sign-in">
      <main id="main">
        <h1>Invoke Ledger console</h1>
        <form method="post" action="/console/sign-in" class="panel">
          {error ? (
            <p class="flash flash-error" role="alert" id="sign-in-error">
              {error}
            </p>
          ) : null}
          <input type="hidden" name="next" value={next} />
          <label for="key">API key</label>
          <input
            type="password"
            id="key"
            name="key"
            required
            autocomplete="off"
            spellcheck={false}
            autofocus
            aria-describedby={error ? 'sign-in-error key-hint' : 'key-hint'}
          />
          <p class="hint" id="key-hint">
            A bearer token from <code>npx invoke-ledger keys create --scopes audit,admin --name console</code>. It is kept for this browser
            session only, in a cookie page scripts cannot read; what its scopes do not allow is not shown.
          </p>
          <button type="submit">Sign in</button>
        </form>
      </main>
    </body>
  </html>
);
