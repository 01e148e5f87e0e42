import t from 'tap'
import { escapeHtml, html, SafeHtml, trusted } from '../../src/admin-ui/index.js'

t.test('html escapes every interpolation unless it is SafeHtml', async (t) => {
  const name = `<script>alert("x")</script> & 'y' \`z\``
  t.equal(html`<td>${name}</td>`.toString(), '<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39; &#96;z&#96;</td>')
  t.equal(html`<input value="${'" onfocus="alert(1)'}">`.toString(), '<input value="&quot; onfocus=&quot;alert(1)">', 'an attribute cannot be closed')
  t.equal(html`<p>${html`<b>${'<i>'}</b>`}</p>`.toString(), '<p><b>&lt;i&gt;</b></p>', 'nested templates stay HTML, their values escaped')
  t.equal(html`<ul>${['<a>', html`<li>${'<b>'}</li>`]}</ul>`.toString(), '<ul>&lt;a&gt;<li>&lt;b&gt;</li></ul>', 'arrays: each item escaped unless safe')
  t.equal(html`${null}${undefined}${false}${true}${0}`.toString(), '0', 'nothing for null, undefined and booleans; numbers as text')
  t.equal(html`${trusted('<hr>')}`.toString(), '<hr>', 'trusted constants pass')
  t.ok(html`x` instanceof SafeHtml)
  t.equal(escapeHtml('a&b'), 'a&amp;b')
  t.equal(html`${{ toString: () => '<x>' } as unknown as string}`.toString(), '&lt;x&gt;', 'objects are escaped as text')
})
