/**
 * Sign in, sign up, continue as guest (one component for the lobby and the room gate),
 * and the account badge in the header with its sign-out button.
 */
import { api } from './api.js';

function showError(node, message) {
  node.textContent = message;
  node.hidden = !message;
}

function selectTab(root, name) {
  for (const tab of root.querySelectorAll('[data-tab]')) {
    tab.setAttribute('aria-selected', String(tab.dataset.tab === name));
  }
  for (const panel of root.querySelectorAll('[data-panel]')) {
    panel.hidden = panel.dataset.panel !== name;
  }
}

/**
 * Show the auth forms in `root`; `onSignedIn(user)` runs after any of them succeeds.
 * `guestsAllowed: false` disables the guest tab with the reason in its tooltip.
 */
export function mountAuth(root, onSignedIn, { guestsAllowed = true } = {}) {
  const error = root.querySelector('#auth-error');
  root.hidden = false;
  for (const tab of root.querySelectorAll('[data-tab]')) {
    tab.addEventListener('click', () => { showError(error, ''); selectTab(root, tab.dataset.tab); });
  }
  const guestTab = root.querySelector('[data-tab=guest]');
  if (!guestsAllowed) {
    guestTab.disabled = true;
    guestTab.title = 'This room does not admit guests: sign in or create an account';
  }
  const submit = (selector, path, fields) => {
    const form = root.querySelector(selector);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      showError(error, '');
      try {
        const body = Object.fromEntries(fields.map((name) => [name, form.elements[name].value]));
        const { user } = await api.post(path, body);
        root.hidden = true;
        showAccount(user);
        await onSignedIn(user);
      } catch (exc) {
        showError(error, exc.message);
      } finally {
        button.disabled = false;
      }
    });
  };
  submit('#signin-form', '/auth/login', ['username', 'password']);
  submit('#signup-form', '/auth/signup', ['username', 'password']);
  submit('#guest-form', '/auth/guest', ['name']);
}

/** The header badge: who is signed in, and sign out (back to the lobby). */
export function showAccount(user) {
  const account = document.getElementById('account');
  if (!account || !user) return;
  document.getElementById('whoami').textContent = user.is_guest ? `${user.name} (guest)` : user.name;
  account.hidden = false;
  const signout = document.getElementById('signout');
  signout.onclick = async () => {
    signout.disabled = true;
    try { await api.post('/auth/logout'); } finally { window.location.assign('/'); }
  };
}
