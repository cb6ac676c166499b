// Comment list on the issue page.

function formatDate(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function renderComment(comment) {
  const item = document.createElement('li');
  item.className = 'comment';
  item.innerHTML = `
    <strong>${comment.author}</strong>
    <time datetime="${comment.created_at}">${formatDate(comment.created_at)}</time>
    <p>${comment.text}</p>`;
  return item;
}

export async function loadComments(list, issueId) {
  const response = await fetch(`/api/issues/${encodeURIComponent(issueId)}/comments`);
  if (!response.ok) {
    throw new Error(`comments request failed: ${response.status}`);
  }
  const comments = await response.json();
  list.replaceChildren(...comments.map(renderComment));
}
