// Nimbus browser console: opens noVNC (vendored under vnc/novnc/) on the WebSocket the page
// was given. The VNC password and the WebSocket token come from the page's JSON config; the
// WebSocket is Nimbus's own proxy to the instance's VNC server.
import RFB from './novnc/core/rfb.js';

const config = JSON.parse(document.getElementById('nimbus-console').textContent);
const status = document.getElementById('status');
const cad = document.getElementById('cad');

function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
    // Lets a headless browser (or a person with devtools) see how far the console got.
    document.body.dataset.console = state;
}

// The WebSocket lives beside the page: same host, ws or wss as the page is http or https.
const url = new URL(config.websocket, window.location.href);
url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';

let rfb;
try {
    rfb = new RFB(document.getElementById('screen'), url.href, {
        credentials: { password: config.password },
        wsProtocols: ['binary'],
    });
} catch (e) {
    setStatus('failed', 'Could not start the console: ' + e.message);
    throw e;
}
rfb.scaleViewport = true;
rfb.focusOnClick = true;

rfb.addEventListener('connect', () => {
    setStatus('connected', 'Connected');
    cad.disabled = false;
});
rfb.addEventListener('disconnect', (e) => {
    cad.disabled = true;
    setStatus('disconnected', e.detail.clean ? 'Disconnected' : 'Connection lost');
});
rfb.addEventListener('credentialsrequired', () => {
    rfb.sendCredentials({ password: config.password });
});
rfb.addEventListener('securityfailure', (e) => {
    setStatus('failed', 'Authentication failed: ' + (e.detail.reason || e.detail.status));
});
rfb.addEventListener('desktopname', (e) => {
    document.title = e.detail.name + ' — ' + config.name;
});
cad.addEventListener('click', () => rfb.sendCtrlAltDel());
